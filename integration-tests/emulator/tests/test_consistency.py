"""Eventual consistency (``/_emulator/consistency``): the delayed caller's EC2 reads lag others' writes."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import REGION, error_code
from helpers import instances, make_group

DELAY = 1.0
LAGGING = "lagging"


@pytest.fixture
def lagging(emulator: Any) -> Any:
    """An EC2 client signed by the one key whose calls see a visibility delay of ``DELAY``."""
    emulator.ok("POST", "consistency", {"delay_seconds": DELAY, "access_keys": [LAGGING]})
    yield boto3.client(
        "ec2",
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id=LAGGING,
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    emulator.ok("DELETE", "consistency")


def volume(ec2: Any, **extra: Any) -> str:
    return ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, **extra)["VolumeId"]


def tags_of(ec2: Any, vid: str) -> dict[str, str]:
    [vol] = ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
    return {t["Key"]: t["Value"] for t in vol.get("Tags", [])}


def test_a_new_volume_is_not_found_until_the_delay_has_passed(ec2, lagging):
    vid = volume(ec2)
    assert ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["State"] == "available"
    with pytest.raises(ClientError) as exc:
        lagging.describe_volumes(VolumeIds=[vid])
    assert error_code(exc) == "InvalidVolume.NotFound"
    assert vid not in [v["VolumeId"] for v in lagging.describe_volumes()["Volumes"]]
    with pytest.raises(ClientError) as exc:
        lagging.create_tags(Resources=[vid], Tags=[{"Key": "k", "Value": "v"}])
    assert error_code(exc) == "InvalidVolume.NotFound"
    time.sleep(DELAY + 0.1)
    assert [v["VolumeId"] for v in lagging.describe_volumes(VolumeIds=[vid])["Volumes"]] == [vid]


def test_a_tag_write_shows_the_old_value_and_misses_filters_until_the_delay_has_passed(ec2, lagging):
    vid = volume(ec2, TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "ferry:claim", "Value": "old"}]}])
    time.sleep(DELAY + 0.1)
    ec2.create_tags(Resources=[vid], Tags=[{"Key": "ferry:claim", "Value": "new"}, {"Key": "extra", "Value": "x"}])
    assert tags_of(ec2, vid) == {"ferry:claim": "new", "extra": "x"}
    assert tags_of(lagging, vid) == {"ferry:claim": "old"}
    by_new = [{"Name": "tag:ferry:claim", "Values": ["new"]}]
    assert lagging.describe_volumes(Filters=by_new)["Volumes"] == []
    assert [t["Key"] for t in lagging.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid]}])["Tags"]] == [
        "ferry:claim"
    ]
    time.sleep(DELAY + 0.1)
    assert tags_of(lagging, vid) == {"ferry:claim": "new", "extra": "x"}
    assert [v["VolumeId"] for v in lagging.describe_volumes(Filters=by_new)["Volumes"]] == [vid]


def test_what_a_call_creates_is_in_its_own_answer_but_not_in_the_next_read(lagging):
    tags = [{"ResourceType": "volume", "Tags": [{"Key": "ferry:group", "Value": "db"}]}]
    made = lagging.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=tags)
    assert made["Tags"] == [{"Key": "ferry:group", "Value": "db"}]
    with pytest.raises(ClientError) as exc:
        lagging.describe_volumes(VolumeIds=[made["VolumeId"]])
    assert error_code(exc) == "InvalidVolume.NotFound"


def test_a_new_instance_and_snapshot_are_not_found_but_auto_scaling_lists_the_instance(ec2, asg, lagging):
    make_group(asg, desired=1)
    [member] = instances(asg)
    iid = member["InstanceId"]
    with pytest.raises(ClientError) as exc:
        lagging.describe_instances(InstanceIds=[iid])
    assert error_code(exc) == "InvalidInstanceID.NotFound"
    assert lagging.describe_instances()["Reservations"] == []
    with pytest.raises(ClientError) as exc:
        lagging.create_tags(Resources=[iid], Tags=[{"Key": "ferry:slot", "Value": "0"}])
    assert error_code(exc) == "InvalidInstanceID.NotFound"
    snap = ec2.create_snapshot(VolumeId=volume(ec2))["SnapshotId"]
    with pytest.raises(ClientError) as exc:
        lagging.describe_snapshots(SnapshotIds=[snap])
    assert error_code(exc) == "InvalidSnapshot.NotFound"
    time.sleep(DELAY + 0.1)
    [reservation] = lagging.describe_instances(InstanceIds=[iid])["Reservations"]
    assert [i["InstanceId"] for i in reservation["Instances"]] == [iid]
    assert [s["SnapshotId"] for s in lagging.describe_snapshots(SnapshotIds=[snap])["Snapshots"]] == [snap]


def test_callers_out_of_scope_and_the_mode_off_see_everything_at_once(emulator, ec2):
    emulator.ok("POST", "consistency", {"delay_seconds": 30, "access_keys": ["someone-else"]})
    try:
        vid = volume(ec2)
        assert [v["VolumeId"] for v in ec2.describe_volumes(VolumeIds=[vid])["Volumes"]] == [vid]
    finally:
        assert emulator.ok("DELETE", "consistency") == {"delay_seconds": 0.0, "access_keys": None}


def test_everyone_is_delayed_without_a_key_list_and_the_mode_survives_a_reset(emulator, ec2):
    emulator.ok("POST", "consistency", {"delay_seconds": 30})
    try:
        emulator.ok("POST", "reset")
        assert emulator.ok("GET", "consistency") == {"delay_seconds": 30.0, "access_keys": None}
        vid = volume(ec2)
        with pytest.raises(ClientError) as exc:
            ec2.describe_volumes(VolumeIds=[vid])
        assert error_code(exc) == "InvalidVolume.NotFound"
    finally:
        emulator.ok("DELETE", "consistency")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"delay_seconds": "2"}, "delay_seconds"),
        ({"delay_seconds": 1, "access_keys": "ferryd"}, "access_keys"),
        ({"delay": 1}, "unknown consistency key"),
    ],
)
def test_bad_settings_are_refused_naming_the_input(emulator, body, named):
    resp = emulator.control("POST", "consistency", body)
    assert resp.status_code == 400 and named in resp.json()["error"]
    assert emulator.ok("GET", "consistency") == {"delay_seconds": 0.0, "access_keys": None}

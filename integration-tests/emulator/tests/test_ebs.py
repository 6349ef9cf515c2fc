"""Strict EBS rules: zones, in-use, devices, instance state, snapshot state, ClientToken, detach, termination."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import error_code


def run(ec2, az="us-east-1a"):
    return ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": az})[
        "Instances"
    ][0]["InstanceId"]


def volume(ec2, az="us-east-1a", **kw):
    return ec2.create_volume(AvailabilityZone=az, Size=10, **kw)["VolumeId"]


def vol_state(ec2, vid):
    return ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]


def test_attach_across_azs_rejected(ec2):
    iid = run(ec2, "us-east-1a")
    vid = volume(ec2, "us-east-1b")
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert error_code(exc) == "InvalidVolume.ZoneMismatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_attach_in_use_and_device_taken(ec2):
    iid, other = run(ec2), run(ec2)
    v1, v2 = volume(ec2), volume(ec2)
    ec2.attach_volume(VolumeId=v1, InstanceId=iid, Device="/dev/sdf")
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=v1, InstanceId=other, Device="/dev/sdg")
    assert error_code(exc) == "VolumeInUse"
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=v2, InstanceId=iid, Device="/dev/sdf")
    assert error_code(exc) == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:  # the root device is taken too
        ec2.attach_volume(VolumeId=v2, InstanceId=iid, Device="/dev/sda1")
    assert error_code(exc) == "InvalidParameterValue"


def test_attach_to_terminated_instance(ec2):
    iid = run(ec2)
    vid = volume(ec2)
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert error_code(exc) == "IncorrectInstanceState"


def test_attach_creating_volume(ec2, emulator):
    emulator.ok("POST", "config", {"volume_create_seconds": 30})
    iid = run(ec2)
    vid = volume(ec2)
    assert vol_state(ec2, vid)["State"] == "creating"
    with pytest.raises(ClientError) as exc:
        ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert error_code(exc) == "IncorrectState"


def test_create_volume_unknown_az(ec2):
    with pytest.raises(ClientError) as exc:
        volume(ec2, "us-east-1z")
    assert error_code(exc) == "InvalidParameterValue"
    assert exc.value.response["Error"]["Message"] == "Invalid availability zone: [us-east-1z]"


def test_create_volume_from_pending_snapshot(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 30})
    snap = ec2.create_snapshot(VolumeId=volume(ec2))
    assert snap["State"] == "pending"
    with pytest.raises(ClientError) as exc:
        ec2.create_volume(AvailabilityZone="us-east-1b", SnapshotId=snap["SnapshotId"])
    assert error_code(exc) == "IncorrectState"
    assert exc.value.response["Error"]["Message"] == "Snapshot is in invalid state - pending"


def test_client_token_idempotency(ec2):
    tags = [{"ResourceType": "volume", "Tags": [{"Key": "ferry:group", "Value": "db"}]}]
    a = ec2.create_volume(AvailabilityZone="us-east-1b", Size=5, ClientToken="tok-1", TagSpecifications=tags)
    b = ec2.create_volume(AvailabilityZone="us-east-1b", Size=5, ClientToken="tok-1", TagSpecifications=tags)
    assert a["VolumeId"] == b["VolumeId"]
    assert len(ec2.describe_volumes(Filters=[{"Name": "tag:ferry:group", "Values": ["db"]}])["Volumes"]) == 1
    with pytest.raises(ClientError) as exc:
        ec2.create_volume(AvailabilityZone="us-east-1b", Size=6, ClientToken="tok-1", TagSpecifications=tags)
    assert error_code(exc) == "IdempotentParameterMismatch"
    c = ec2.create_volume(AvailabilityZone="us-east-1b", Size=5, ClientToken="tok-2", TagSpecifications=tags)
    assert c["VolumeId"] != a["VolumeId"]


def test_detach_without_instance_id(ec2):
    iid = run(ec2)
    vid = volume(ec2)
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    resp = ec2.detach_volume(VolumeId=vid)
    assert resp["InstanceId"] == iid and resp["State"] == "detaching"
    assert vol_state(ec2, vid)["State"] == "available"
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=vid)
    assert error_code(exc) == "IncorrectState"


def test_detach_naming_an_instance_answers_as_ec2(ec2):
    # moto's own test_volume_attach_and_detach: an unknown instance first, then "not attached to it".
    iid = run(ec2)
    vid = volume(ec2)
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=vid, InstanceId="i-1234abcd")
    assert error_code(exc) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=vid, InstanceId=iid)
    assert error_code(exc) == "InvalidAttachment.NotFound"
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=vid, InstanceId="i-1234abcd")
    assert error_code(exc) == "InvalidInstanceID.NotFound"
    assert vol_state(ec2, vid)["State"] == "in-use"


def test_termination_detaches_and_deletes_root(ec2):
    iid = run(ec2)
    root = [m["Ebs"]["VolumeId"] for m in ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]]
    vid = volume(ec2)
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    ec2.terminate_instances(InstanceIds=[iid])
    assert vol_state(ec2, vid)["State"] == "available"
    assert vol_state(ec2, vid)["Attachments"] == []
    remaining = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    assert not set(root) & remaining


def test_termination_completes_pending_detach(ec2, emulator):
    emulator.ok("POST", "config", {"detach_seconds": 60})
    iid = run(ec2)
    vid = volume(ec2)
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    ec2.detach_volume(VolumeId=vid)
    assert vol_state(ec2, vid)["Attachments"][0]["State"] == "detaching"
    ec2.terminate_instances(InstanceIds=[iid])
    assert vol_state(ec2, vid)["State"] == "available"

"""Faults on demand: throttling, 5xx errors, latency, AZ outage."""

from __future__ import annotations

import time

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import error_code, wait_for
from helpers import make_group
from test_ebs import run, vol_state, volume


def test_ec2_throttle_burst(ec2, emulator):
    ec2.describe_volumes()  # warm moto's EC2 backend up first: its first call can take most of a second
    emulator.ok("POST", "faults", {"throttle": {"ec2": {"rate": 0.5, "burst": 2}}})
    ec2.describe_volumes()
    ec2.describe_volumes()
    with pytest.raises(ClientError) as exc:
        ec2.describe_volumes()
    assert error_code(exc) == "RequestLimitExceeded"
    assert exc.value.response["Error"]["Message"] == "Request limit exceeded."
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    time.sleep(2.1)
    ec2.describe_volumes()  # refilled


def test_autoscaling_throttle(asg, emulator):
    emulator.ok("POST", "faults", {"throttle": {"autoscaling": {"rate": 0.1, "burst": 2}}})
    asg.describe_auto_scaling_groups()
    asg.describe_auto_scaling_groups()
    with pytest.raises(ClientError) as exc:
        asg.describe_auto_scaling_groups()
    assert error_code(exc) == "Throttling"
    assert exc.value.response["Error"]["Message"] == "Rate exceeded"


def test_sqs_json_throttle(sqs, emulator):
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    emulator.ok("POST", "faults", {"throttle": {"sqs": {"rate": 0.1, "burst": 1}}})
    sqs.receive_message(QueueUrl=url)
    resp = requests.post(
        emulator.url,
        data='{"QueueUrl": "%s"}' % url,
        headers={
            "X-Amz-Target": "AmazonSQS.ReceiveMessage",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        },
        timeout=5,
    )
    assert resp.status_code == 400
    assert resp.json() == {"__type": "com.amazonaws.sqs#ThrottlingException", "message": "Rate exceeded"}
    assert resp.headers["x-amzn-query-error"] == "RequestThrottled;Sender"


def test_per_action_bucket(ec2, emulator):
    emulator.ok("POST", "faults", {"throttle": {"ec2:CreateVolume": {"rate": 0.01, "burst": 1}}})
    volume(ec2)
    with pytest.raises(ClientError) as exc:
        volume(ec2)
    assert error_code(exc) == "RequestLimitExceeded"
    for _ in range(5):
        ec2.describe_volumes()  # other actions unaffected


def test_error_rate(ec2, asg, emulator):
    emulator.ok("POST", "faults", {"error_rate": 1.0, "seed": 7})
    seen = set()
    for _ in range(8):
        with pytest.raises(ClientError) as exc:
            ec2.describe_volumes()
        status = exc.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert (status, error_code(exc)) in {(500, "InternalError"), (503, "ServiceUnavailable")}
        seen.add(status)
    assert seen == {500, 503}
    with pytest.raises(ClientError):
        asg.describe_auto_scaling_groups()
    assert emulator.ok("GET", "faults")["error_rate"] == 1.0  # control endpoints never fault
    emulator.ok("DELETE", "faults")
    ec2.describe_volumes()


def test_latency(ec2, emulator):
    emulator.ok("POST", "faults", {"latency_ms": [200, 300]})
    start = time.monotonic()
    ec2.describe_volumes()
    assert 0.2 <= time.monotonic() - start < 2
    start = time.monotonic()
    emulator.ok("GET", "faults")
    assert time.monotonic() - start < 0.2
    logged = emulator.ok("GET", "calls", action="DescribeVolumes")["calls"]
    assert 200 <= logged[-1]["duration_ms"] < 2000  # the call's latency, injected delay included


def test_partial_updates_merge(emulator):
    emulator.ok("POST", "faults", {"throttle": {"ec2": {"rate": 1, "burst": 2}}, "seed": 1})
    emulator.ok("POST", "faults", {"throttle": {"sqs": {"rate": 5, "burst": 5}}, "latency_ms": [1, 2]})
    got = emulator.ok("GET", "faults")
    assert set(got["throttle"]) == {"ec2", "sqs"}
    assert got["latency_ms"] == [1.0, 2.0] and got["seed"] == 1
    emulator.ok("POST", "faults", {"throttle": {"ec2": None}})
    assert set(emulator.ok("GET", "faults")["throttle"]) == {"sqs"}
    assert emulator.ok("DELETE", "faults") == {}


def test_az_outage_status_checks(ec2, emulator):
    down, up = run(ec2, "us-east-1a"), run(ec2, "us-east-1b")
    emulator.ok("POST", "faults", {"az_outage": {"az": "us-east-1a", "snapshot_mode": "pending"}})
    statuses = {s["InstanceId"]: s for s in ec2.describe_instance_status(InstanceIds=[down, up])["InstanceStatuses"]}
    assert statuses[down]["InstanceStatus"]["Status"] == "impaired"
    assert statuses[down]["SystemStatus"]["Status"] == "impaired"
    assert statuses[up]["InstanceStatus"]["Status"] == "ok"
    emulator.ok("DELETE", "faults")
    statuses = ec2.describe_instance_status(InstanceIds=[down])["InstanceStatuses"]
    assert statuses[0]["InstanceStatus"]["Status"] == "ok"


@pytest.mark.parametrize("mode", ["pending", "error"])
def test_az_outage_snapshots(ec2, emulator, mode):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.3})
    emulator.ok("POST", "faults", {"az_outage": {"az": "us-east-1a", "snapshot_mode": mode}})
    stuck = ec2.create_snapshot(VolumeId=volume(ec2, "us-east-1a"))["SnapshotId"]
    fine = ec2.create_snapshot(VolumeId=volume(ec2, "us-east-1b"))["SnapshotId"]
    time.sleep(0.6)
    got = {s["SnapshotId"]: s["State"] for s in ec2.describe_snapshots(SnapshotIds=[stuck, fine])["Snapshots"]}
    assert got == {stuck: mode, fine: "completed"}


def test_az_outage_detach_never_completes(ec2, emulator):
    iid = run(ec2, "us-east-1a")
    vid = volume(ec2, "us-east-1a")
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    emulator.ok("POST", "faults", {"az_outage": {"az": "us-east-1a"}})
    ec2.detach_volume(VolumeId=vid)
    time.sleep(0.3)
    assert vol_state(ec2, vid)["Attachments"][0]["State"] == "detaching"
    emulator.ok("DELETE", "faults")
    wait_for(lambda: vol_state(ec2, vid)["State"] == "available", timeout=2)


def test_faults_bad_input(emulator):
    for body in (
        {"nope": 1},
        {"error_rate": 2},
        {"error_rate": "x"},
        {"latency_ms": [5, 1]},
        {"throttle": {"ec3": {"rate": 1, "burst": 1}}},
        {"throttle": {"ec2": {"rate": -1, "burst": 1}}},
        {"az_outage": {"az": "us-east-1z"}},
        {"az_outage": {"az": "us-east-1a", "snapshot_mode": "sometimes"}},
        {"seed": "x"},
        [1, 2],
    ):
        resp = emulator.control("POST", "faults", body)
        assert resp.status_code == 400, body
        assert "error" in resp.json()
    resp = requests.post(f"{emulator.url}/_emulator/faults", data="{not json", timeout=5)
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]
    assert emulator.ok("GET", "faults") == {}


def test_throttled_group_still_works_after_clear(asg, emulator):
    emulator.ok("POST", "faults", {"throttle": {"autoscaling": {"rate": 0, "burst": 1}}})
    asg.describe_auto_scaling_groups()
    with pytest.raises(ClientError):
        asg.describe_auto_scaling_groups()
    emulator.ok("DELETE", "faults")
    make_group(asg, desired=1)

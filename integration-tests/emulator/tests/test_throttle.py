"""Per-action throttling: default buckets, overrides, refill, exemptions, and the call log's counts."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import REGION


def throttled(call: Any) -> ClientError:
    with pytest.raises(ClientError) as exc:
        call()
    return exc.value


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def client_as(emulator: Any, service: str, access_key: str = "testing") -> Any:
    """A client that never retries (``total_max_attempts`` 1), so every call is one request."""
    return boto3.client(
        service,
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def ec2(emulator: Any) -> Any:
    return client_as(emulator, "ec2")


@pytest.fixture
def asg(emulator: Any) -> Any:
    return client_as(emulator, "autoscaling")


@pytest.fixture
def sqs(emulator: Any) -> Any:
    return client_as(emulator, "sqs")


@pytest.fixture(autouse=True)
def _warm(_reset: None, ec2: Any) -> None:
    ec2.describe_volumes()  # moto's first EC2 call can take most of a second: not inside a refill window


def test_off_by_default(ec2, asg, emulator):
    for _ in range(30):
        ec2.describe_volumes()
        asg.describe_auto_scaling_groups()
    got = emulator.ok("GET", "calls/summary")
    assert got["throttled"] == 0 and got["errors"] == 0
    assert got["actions"]["ec2:DescribeVolumes"]["calls"] == 31
    assert emulator.ok("GET", "faults") == {}


def test_default_bucket_per_action_burst_then_throttled(ec2, asg, emulator):
    emulator.ok("POST", "faults", {"throttle": {"default": {"per_sec": 0.1, "burst": 3}}})
    for _ in range(3):
        ec2.describe_volumes()
    exc = throttled(ec2.describe_volumes)
    assert error_code(exc) == "RequestLimitExceeded"
    assert exc.response["Error"]["Message"] == "Request limit exceeded."
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # Every action has a bucket of its own.
    for _ in range(3):
        ec2.describe_snapshots()
    assert error_code(throttled(ec2.describe_snapshots)) == "RequestLimitExceeded"
    for _ in range(3):
        asg.describe_auto_scaling_groups()
    exc = throttled(asg.describe_auto_scaling_groups)
    assert error_code(exc) == "Throttling"
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert exc.response["Error"]["Message"] == "Rate exceeded"
    asg.describe_lifecycle_hooks(AutoScalingGroupName="nope")  # another action: its own full bucket


def test_sqs_default_bucket(sqs, emulator):
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    emulator.ok("POST", "faults", {"throttle": {"default": {"rate": 0.1, "burst": 2}}})
    sqs.send_message(QueueUrl=url, MessageBody="a")
    sqs.send_message(QueueUrl=url, MessageBody="b")
    exc = throttled(lambda: sqs.send_message(QueueUrl=url, MessageBody="c"))
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # botocore reads SQS's x-amzn-query-error header: the query-protocol code.
    assert error_code(exc) == "RequestThrottled"
    sqs.receive_message(QueueUrl=url)


def test_refill_after_time(ec2, emulator):
    emulator.ok("POST", "faults", {"throttle": {"default": {"rate": 2, "burst": 2}}})
    ec2.describe_volumes()
    ec2.describe_volumes()
    throttled(ec2.describe_volumes)
    time.sleep(0.6)  # 2/s: one token back after 0.5 s
    ec2.describe_volumes()
    throttled(ec2.describe_volumes)
    time.sleep(1.1)  # refills up to the burst, no further
    ec2.describe_volumes()
    ec2.describe_volumes()
    throttled(ec2.describe_volumes)


def test_per_action_and_per_service_overrides(ec2, asg, emulator):
    emulator.ok(
        "POST",
        "faults",
        {
            "throttle": {
                "default": {"rate": 0.01, "burst": 1},
                "ec2:*": {"rate": 0.01, "burst": 2},
                "ec2:DescribeVolumes": {"rate": 0.01, "burst": 4},
            }
        },
    )
    for _ in range(4):
        ec2.describe_volumes()
    throttled(ec2.describe_volumes)
    for _ in range(2):
        ec2.describe_snapshots()  # ec2:* applies
    throttled(ec2.describe_snapshots)
    asg.describe_auto_scaling_groups()  # default applies
    throttled(asg.describe_auto_scaling_groups)
    # Removing the override: that action falls back to ec2:* (buckets refilled on any throttle change).
    emulator.ok("POST", "faults", {"throttle": {"ec2:DescribeVolumes": None}})
    ec2.describe_volumes()
    ec2.describe_volumes()
    throttled(ec2.describe_volumes)


def test_shared_service_bucket_with_action_buckets(ec2, emulator):
    emulator.ok("POST", "faults", {"throttle": {"ec2": {"rate": 0.01, "burst": 3}, "default": {"rate": 0.01, "burst": 2}}})
    ec2.describe_volumes()
    ec2.describe_volumes()
    throttled(ec2.describe_volumes)  # its own bucket is empty (the shared one had a token left)
    throttled(ec2.describe_snapshots)  # the shared one is empty now: 3 taken (a throttled call takes too)


def test_exempt_access_keys(ec2, emulator):
    harness = client_as(emulator, "ec2", "harness")
    emulator.ok("POST", "faults", {"throttle": {"default": {"rate": 0.01, "burst": 2}, "exempt": ["harness"]}})
    for _ in range(10):
        harness.describe_volumes()  # never throttled, takes no token
    ec2.describe_volumes()
    ec2.describe_volumes()
    throttled(ec2.describe_volumes)
    assert emulator.ok("GET", "faults")["throttle"]["exempt"] == ["harness"]


def test_call_log_counts_throttled_calls(ec2, asg, emulator):
    since = emulator.ok("GET", "calls/summary")["last_seq"]
    harness = client_as(emulator, "ec2", "harness")
    emulator.ok("POST", "faults", {"throttle": {"default": {"rate": 0.01, "burst": 2}, "exempt": ["harness"]}})
    for _ in range(3):
        harness.describe_volumes()
    for _ in range(5):
        try:
            ec2.describe_volumes()
        except ClientError:
            pass
    asg.describe_auto_scaling_groups()
    calls = emulator.ok("GET", "calls", since=since, access_key="testing")
    vols = [c for c in calls["calls"] if c["action"] == "DescribeVolumes"]
    assert [c["throttled"] for c in vols] == [False, False, True, True, True]
    assert {c["error_code"] for c in vols if c["throttled"]} == {"RequestLimitExceeded"}
    assert {c["status"] for c in vols if c["throttled"]} == {503}
    assert all(c["access_key"] == "testing" for c in calls["calls"])
    got = emulator.ok("GET", "calls/summary", since=since, access_key="testing")
    assert got["calls"] == 6 and got["throttled"] == 3 and got["errors"] == 3
    assert got["actions"] == {
        "autoscaling:DescribeAutoScalingGroups": {"calls": 1, "throttled": 0, "errors": 0},
        "ec2:DescribeVolumes": {"calls": 5, "throttled": 3, "errors": 3},
    }
    mine = emulator.ok("GET", "calls/summary", since=since, access_key="harness")
    assert (mine["calls"], mine["throttled"]) == (3, 0)
    everything = emulator.ok("GET", "calls/summary", since=since)
    assert everything["calls"] == 9 and everything["last_seq"] == since + 9
    assert emulator.control("GET", "calls/summary", bogus=1).status_code == 400


def test_a_non_throttle_error_is_not_counted_as_throttled(ec2, emulator):
    since = emulator.ok("GET", "calls/summary")["last_seq"]
    emulator.ok("POST", "faults", {"error_rate": 1.0, "seed": 3})
    throttled(ec2.describe_volumes)
    got = emulator.ok("GET", "calls/summary", since=since)
    assert (got["calls"], got["throttled"], got["errors"]) == (1, 0, 1)


def test_throttle_bad_input(emulator):
    for body in (
        {"throttle": {"ec2:DescribeVolume": {"rate": 1, "burst": 1}}},
        {"throttle": {"ec2:": {"rate": 1, "burst": 1}}},
        {"throttle": {"sqs:*:x": {"rate": 1, "burst": 1}}},
        {"throttle": {"defaults": {"rate": 1, "burst": 1}}},
        {"throttle": {"default": {"rate": 1, "per_sec": 1, "burst": 1}}},
        {"throttle": {"default": {"burst": 1}}},
        {"throttle": {"default": {"rate": 1, "burst": 0}}},
        {"throttle": {"default": {"rate": 1, "burst": 1, "size": 2}}},
        {"throttle": {"exempt": "harness"}},
        {"throttle": {"exempt": [""]}},
    ):
        resp = emulator.control("POST", "faults", body)
        assert resp.status_code == 400, body
        assert "error" in resp.json()
    assert emulator.ok("GET", "faults") == {}
    got = emulator.ok("POST", "faults", {"throttle": {"default": {"per_sec": 5, "burst": 10}}})
    assert got["throttle"] == {"default": {"rate": 5.0, "burst": 10.0}}

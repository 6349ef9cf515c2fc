"""Control endpoints, the call log, reset, robustness against unknown input, SQS JSON protocol."""

from __future__ import annotations

import json

import requests
from helpers import make_group

SIGV4 = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=0"


def test_call_log_records_params_status_and_errors(ec2, sqs, emulator):
    ec2.create_volume(
        AvailabilityZone="us-east-1b", Size=5, ClientToken="t1",
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "ferry:group", "Value": "db"}]}],
    )
    try:
        ec2.create_volume(AvailabilityZone="us-east-1z", Size=5)
    except Exception:
        pass
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 500)
    calls = emulator.ok("GET", "calls")["calls"]
    create = [c for c in calls if c["action"] == "CreateVolume"]
    assert len(create) == 2
    ok, bad = create
    assert ok["service"] == "ec2" and ok["status"] == 200 and ok["error_code"] is None
    assert ok["params"]["AvailabilityZone"] == "us-east-1b"
    assert ok["params"]["ClientToken"] == "t1"
    assert ok["params"]["TagSpecification.1.Tag.1.Key"] == "ferry:group"
    assert bad["status"] == 400 and bad["error_code"] == "InvalidParameterValue"
    send = [c for c in calls if c["action"] == "SendMessage"][0]
    assert send["service"] == "sqs" and send["params"]["QueueUrl"] == url
    assert len(send["params"]["MessageBody"]) <= 201
    assert [c["seq"] for c in calls] == sorted(c["seq"] for c in calls)
    # filters
    only = emulator.ok("GET", "calls", service="ec2", action="CreateVolume")["calls"]
    assert [c["seq"] for c in only] == [c["seq"] for c in create]
    since = emulator.ok("GET", "calls", since=ok["seq"])["calls"]
    assert all(c["seq"] > ok["seq"] for c in since) and since
    emulator.ok("DELETE", "calls")
    assert emulator.ok("GET", "calls")["calls"] == []


def test_reset_clears_everything(ec2, asg, emulator):
    make_group(asg, desired=1)
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    emulator.ok("POST", "config", {"snapshot_seconds": 5})
    emulator.ok("POST", "faults", {"latency_ms": [1, 2]})
    emulator.ok("POST", "placement", {"group": "db", "az": "us-east-1c"})
    emulator.ok("POST", "reset")
    assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert ec2.describe_volumes()["Volumes"] == []
    assert emulator.ok("GET", "config")["snapshot_seconds"] == 0
    assert emulator.ok("GET", "faults") == {}
    assert emulator.ok("GET", "placement") == {"placement": {}}
    assert emulator.ok("GET", "lifecycle") == {"actions": []}
    calls = emulator.ok("GET", "calls")["calls"]
    assert [c["action"] for c in calls] == ["DescribeAutoScalingGroups", "DescribeVolumes"]


def test_config_roundtrip_and_bad_input(emulator):
    got = emulator.ok("POST", "config", {"snapshot_seconds": 1.5, "replacement_order": "before_terminate"})
    assert got["snapshot_seconds"] == 1.5 and got["replacement_order"] == "before_terminate"
    assert emulator.ok("GET", "config") == got
    for body in (
        {"snapshot_seconds": -1},
        {"snapshot_seconds": "soon"},
        {"replacement_order": "sideways"},
        {"unknown_key": 1},
        "just a string",
    ):
        resp = emulator.control("POST", "config", body)
        assert resp.status_code == 400, body
        assert resp.json()["error"]
    assert emulator.ok("GET", "config") == got  # nothing half-applied
    for body in ({"group": "db", "az": "mars-1a"}, {"az": "us-east-1a"}, {"group": "db"}, {"group": "db", "az": "us-east-1a", "x": 1}):
        resp = emulator.control("POST", "placement", body)
        assert resp.status_code == 400, body
    assert emulator.control("GET", "calls", since="x").status_code == 400
    assert emulator.control("GET", "nowhere").status_code == 404


def test_unknown_actions_answer_like_aws(emulator, ec2):
    resp = requests.post(emulator.url, data={"Action": "FlyToTheMoon", "Version": "2016-11-15"},
                         headers={"Authorization": SIGV4.format("ec2")}, timeout=5)
    assert resp.status_code == 400 and "<Code>InvalidAction</Code>" in resp.text and "<Errors>" in resp.text
    resp = requests.post(emulator.url, data={"Action": "FlyToTheMoon", "Version": "2011-01-01"},
                         headers={"Authorization": SIGV4.format("autoscaling")}, timeout=5)
    assert resp.status_code == 400 and "<Code>InvalidAction</Code>" in resp.text
    resp = requests.post(emulator.url, data="{}", timeout=5, headers={
        "Authorization": SIGV4.format("sqs"), "X-Amz-Target": "AmazonSQS.FlyToTheMoon",
        "Content-Type": "application/x-amz-json-1.0"})
    assert resp.status_code == 400 and resp.json()["__type"].endswith("UnknownOperationException")
    # a real AWS action moto does not implement
    resp = requests.post(emulator.url, data={"Action": "GetConsoleScreenshot", "Version": "2016-11-15", "InstanceId": "i-1"},
                         headers={"Authorization": SIGV4.format("ec2")}, timeout=5)
    assert resp.status_code in (400, 500) and "<Code>" in resp.text
    ec2.describe_volumes()  # still alive


def test_sqs_json_protocol_roundtrip(sqs, emulator):
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"a": 1}')
    resp = requests.post(emulator.url, data=json.dumps({"QueueUrl": url, "MaxNumberOfMessages": 1}), timeout=5, headers={
        "Authorization": SIGV4.format("sqs"), "X-Amz-Target": "AmazonSQS.ReceiveMessage",
        "Content-Type": "application/x-amz-json-1.0"})
    assert resp.status_code == 200
    [msg] = resp.json()["Messages"]
    assert msg["Body"] == '{"a": 1}'
    logged = emulator.ok("GET", "calls", action="ReceiveMessage")["calls"][-1]
    assert logged["params"] == {"QueueUrl": url, "MaxNumberOfMessages": 1}

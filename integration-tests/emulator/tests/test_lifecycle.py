"""Lifecycle hooks: fields, notifications, Pending:Wait / Terminating:Wait, complete, heartbeat, expiry."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from conftest import error_code, wait_for
from helpers import (
    LAUNCHING,
    TERMINATING,
    actions,
    drain,
    ec2_state,
    make_group,
    make_queue,
    put_hook,
    receive,
    states,
)

HOOK_KEYS = {
    "Origin", "Destination", "LifecycleHookName", "AccountId", "RequestId", "LifecycleTransition",
    "AutoScalingGroupName", "Service", "Time", "EC2InstanceId", "LifecycleActionToken",
}


def test_put_hook_keeps_fields_and_sends_test_notification(asg, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn, HeartbeatTimeout=120, DefaultResult="CONTINUE", NotificationMetadata="m")
    put_hook(asg, TERMINATING, None)
    hooks = {h["LifecycleHookName"]: h for h in asg.describe_lifecycle_hooks(AutoScalingGroupName="db")["LifecycleHooks"]}
    launch = hooks["launch"]
    assert launch["NotificationTargetARN"] == arn
    assert launch["RoleARN"] == "arn:aws:iam::123456789012:role/hooks"
    assert launch["HeartbeatTimeout"] == 120
    assert launch["DefaultResult"] == "CONTINUE"
    assert launch["NotificationMetadata"] == "m"
    assert launch["GlobalTimeout"] == 12000
    assert hooks["terminate"]["HeartbeatTimeout"] == 3600
    assert hooks["terminate"]["DefaultResult"] == "ABANDON"
    [test] = receive(sqs, url, 1, skip_tests=False)
    assert set(test) == {"AccountId", "RequestId", "AutoScalingGroupARN", "AutoScalingGroupName", "Service", "Event", "Time"}
    assert test["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert test["AccountId"] == "123456789012"
    assert test["AutoScalingGroupName"] == "db"
    assert test["AutoScalingGroupARN"].startswith("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:")
    assert test["Service"] == "AWS Auto Scaling"
    assert test["Time"].endswith("Z") and len(test["Time"]) == len("2026-11-22T23:11:08.123Z")


def test_put_hook_to_missing_queue_fails(asg):
    make_group(asg, desired=0)
    with pytest.raises(ClientError) as exc:
        put_hook(asg, LAUNCHING, "arn:aws:sqs:us-east-1:123456789012:nope")
    assert error_code(exc) == "ValidationError"


def test_launch_waits_and_message_format(asg, sqs, ec2):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn)
    put_hook(asg, LAUNCHING, arn, name="with-meta", NotificationMetadata='{"slot": 0}')
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [(iid, lifecycle_state)] = states(asg).items()
    assert lifecycle_state == "Pending:Wait"
    assert ec2_state(ec2, iid) == "running"
    described = asg.describe_auto_scaling_instances(InstanceIds=[iid])["AutoScalingInstances"][0]
    assert described["LifecycleState"] == "Pending:Wait"
    msgs = {m["LifecycleHookName"]: m for m in receive(sqs, url, 2)}
    plain, meta = msgs["launch"], msgs["with-meta"]
    assert set(plain) == HOOK_KEYS
    assert set(meta) == HOOK_KEYS | {"NotificationMetadata"}
    assert meta["NotificationMetadata"] == '{"slot": 0}'
    assert plain["Origin"] == "EC2" and plain["Destination"] == "AutoScalingGroup"
    assert plain["LifecycleTransition"] == LAUNCHING
    assert plain["EC2InstanceId"] == iid
    assert plain["Service"] == "AWS Auto Scaling"
    assert plain["AccountId"] == "123456789012"
    assert plain["Time"].endswith("Z")
    # both hooks must complete before InService
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                  LifecycleActionToken=plain["LifecycleActionToken"], LifecycleActionResult="CONTINUE")
    assert states(asg)[iid] == "Pending:Wait"
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="with-meta",
                                  InstanceId=iid, LifecycleActionResult="CONTINUE")
    assert states(asg)[iid] == "InService"


def test_hook_in_create_group_spec(asg, sqs):
    url, arn = make_queue(sqs)
    asg.create_launch_configuration(LaunchConfigurationName="lc", ImageId="ami-12345678", InstanceType="t3.micro")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="db", LaunchConfigurationName="lc", MinSize=1, MaxSize=1, DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
        LifecycleHookSpecificationList=[{
            "LifecycleHookName": "launch", "LifecycleTransition": LAUNCHING,
            "NotificationTargetARN": arn, "RoleARN": "arn:aws:iam::123456789012:role/r",
        }],
    )
    assert list(states(asg).values()) == ["Pending:Wait"]
    assert receive(sqs, url, 1)[0]["LifecycleHookName"] == "launch"


def test_complete_errors(asg, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn)
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [msg] = receive(sqs, url, 1)
    with pytest.raises(ClientError) as exc:
        asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                      InstanceId="i-0123456789abcdef0", LifecycleActionResult="CONTINUE")
    assert error_code(exc) == "ValidationError"
    assert exc.value.response["Error"]["Message"] == "No active Lifecycle Action found with instance ID i-0123456789abcdef0"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as exc:
        asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="db", LifecycleHookName="launch",
                                              LifecycleActionToken="00000000-0000-4000-8000-000000000000")
    assert exc.value.response["Error"]["Message"] == "No active Lifecycle Action found with token 00000000-0000-4000-8000-000000000000"
    token = msg["LifecycleActionToken"]
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                  LifecycleActionToken=token, LifecycleActionResult="CONTINUE")
    with pytest.raises(ClientError) as exc:  # completing twice
        asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                      LifecycleActionToken=token, LifecycleActionResult="CONTINUE")
    assert error_code(exc) == "ValidationError"
    assert f"with token {token}" in exc.value.response["Error"]["Message"]


def test_raw_error_xml_shape(emulator, asg):
    import requests

    make_group(asg, desired=0)
    resp = requests.post(emulator.url, data={
        "Action": "CompleteLifecycleAction", "Version": "2011-01-01", "AutoScalingGroupName": "db",
        "LifecycleHookName": "h", "InstanceId": "i-1", "LifecycleActionResult": "CONTINUE",
    }, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/autoscaling/aws4_request, SignedHeaders=host, Signature=0"})
    assert resp.status_code == 400
    assert "<ErrorResponse" in resp.text and "<Type>Sender</Type>" in resp.text
    assert "<Code>ValidationError</Code>" in resp.text and "<RequestId>" in resp.text


def test_launch_abandon_terminates_and_replaces(asg, sqs, ec2, emulator):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn)
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [first] = receive(sqs, url, 1)
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                  InstanceId=first["EC2InstanceId"], LifecycleActionResult="ABANDON")
    assert ec2_state(ec2, first["EC2InstanceId"]) == "terminated"
    [second] = receive(sqs, url, 1)
    assert second["EC2InstanceId"] != first["EC2InstanceId"]
    assert states(asg) == {second["EC2InstanceId"]: "Pending:Wait"}
    done = [a for a in actions(emulator) if a["instance_id"] == first["EC2InstanceId"]]
    assert [(a["state"], a["result"]) for a in done] == [("completed", "ABANDON")]


def test_heartbeat_timeout_applies_default_abandon(asg, sqs, ec2, emulator):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn, HeartbeatTimeout=1)
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [first] = receive(sqs, url, 1)
    [second] = receive(sqs, url, 1, timeout=4)  # the replacement's hook, after expiry
    assert second["EC2InstanceId"] != first["EC2InstanceId"]
    assert ec2_state(ec2, first["EC2InstanceId"]) == "terminated"
    expired = [a for a in actions(emulator) if a["token"] == first["LifecycleActionToken"]][0]
    assert (expired["state"], expired["result"]) == ("expired", "ABANDON")


def test_heartbeat_extends_action(asg, sqs, emulator):
    url, arn = make_queue(sqs)
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn, HeartbeatTimeout=1, DefaultResult="ABANDON")
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [msg] = receive(sqs, url, 1)
    for _ in range(4):  # 2 s in total, twice the timeout
        time.sleep(0.5)
        asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="db", LifecycleHookName="launch",
                                              LifecycleActionToken=msg["LifecycleActionToken"])
    assert states(asg) == {msg["EC2InstanceId"]: "Pending:Wait"}
    [action] = actions(emulator)
    assert action["state"] == "active" and action["heartbeats"] == 4
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                  LifecycleActionToken=msg["LifecycleActionToken"], LifecycleActionResult="CONTINUE")
    assert states(asg) == {msg["EC2InstanceId"]: "InService"}


def test_default_continue_on_expiry_and_timeout_scale(asg, sqs, emulator):
    url, arn = make_queue(sqs)
    emulator.ok("POST", "config", {"hook_timeout_scale": 0.01})
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, arn, HeartbeatTimeout=30, DefaultResult="CONTINUE")  # 0.3 s scaled
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [msg] = receive(sqs, url, 1)
    wait_for(lambda: states(asg) == {msg["EC2InstanceId"]: "InService"}, timeout=3)


@pytest.mark.parametrize("decrement", [False, True])
def test_terminate_after_order(asg, sqs, ec2, decrement):
    url, arn = make_queue(sqs)
    make_group(asg, desired=1)
    [old] = states(asg)
    put_hook(asg, TERMINATING, arn)
    put_hook(asg, LAUNCHING, arn)
    drain(sqs, url)
    asg.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=decrement)
    assert states(asg) == {old: "Terminating:Wait"}  # default: no replacement yet
    assert ec2_state(ec2, old) == "running"
    [msg] = receive(sqs, url, 1)
    assert msg["Origin"] == "AutoScalingGroup" and msg["Destination"] == "EC2"
    assert msg["LifecycleTransition"] == TERMINATING and msg["EC2InstanceId"] == old
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="terminate",
                                  LifecycleActionToken=msg["LifecycleActionToken"], LifecycleActionResult="CONTINUE")
    assert ec2_state(ec2, old) == "terminated"
    now = states(asg)
    assert old not in now
    if decrement:
        assert now == {}
        assert drain(sqs, url) == []
    else:
        [new] = now
        assert now[new] == "Pending:Wait"
        assert receive(sqs, url, 1)[0]["EC2InstanceId"] == new


def test_replacement_before_terminate(asg, sqs, ec2, emulator):
    emulator.ok("POST", "config", {"replacement_order": "before_terminate"})
    url, arn = make_queue(sqs)
    make_group(asg, desired=1)
    [old] = states(asg)
    put_hook(asg, TERMINATING, arn)
    put_hook(asg, LAUNCHING, arn)
    drain(sqs, url)
    asg.set_instance_health(InstanceId=old, HealthStatus="Unhealthy")
    now = states(asg)
    [new] = [i for i in now if i != old]
    assert now == {old: "Terminating:Wait", new: "Pending:Wait"}  # both hooks in flight
    msgs = {m["LifecycleTransition"]: m for m in receive(sqs, url, 2)}
    assert msgs[TERMINATING]["EC2InstanceId"] == old
    assert msgs[LAUNCHING]["EC2InstanceId"] == new
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="terminate",
                                  InstanceId=old, LifecycleActionResult="ABANDON")
    assert ec2_state(ec2, old) == "terminated"
    assert states(asg) == {new: "Pending:Wait"}  # no extra replacement


def test_scale_in_goes_through_terminate_hook(asg, sqs, ec2):
    url, arn = make_queue(sqs)
    make_group(asg, desired=2)
    put_hook(asg, TERMINATING, arn)
    drain(sqs, url)
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    waiting = [i for i, s in states(asg).items() if s == "Terminating:Wait"]
    assert len(waiting) == 1
    [msg] = receive(sqs, url, 1)
    assert msg["EC2InstanceId"] == waiting[0]
    assert ec2_state(ec2, waiting[0]) == "running"
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="terminate",
                                  InstanceId=waiting[0], LifecycleActionResult="CONTINUE")
    assert len(states(asg)) == 1 and ec2_state(ec2, waiting[0]) == "terminated"


def test_no_hooks_means_instant(asg, ec2):
    make_group(asg, desired=1)
    [(old, s)] = states(asg).items()
    assert s == "InService"
    asg.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=False)
    [(new, s)] = states(asg).items()
    assert new != old and s == "InService" and ec2_state(ec2, old) == "terminated"


def test_global_cap_limits_heartbeats():
    """Unit check of the deadline rule: min(48 h, 100 x HeartbeatTimeout) since the start."""
    from ferry_emulator import lifecycle, state

    now = state.now()
    action = lifecycle.Action(
        token="t", instance_id="i", group="g", hook="h", transition=LAUNCHING, account_id="1",
        region="us-east-1", heartbeat_timeout=1, default_result="ABANDON", started=now - 100.5, last_heartbeat=now,
    )
    assert action.deadline() == pytest.approx(now - 0.5)  # capped by 100 x 1 s, despite the fresh heartbeat
    action.heartbeat_timeout = 7200
    action.started = now
    assert action.deadline() == pytest.approx(now + 7200)
    action.last_heartbeat = now + 48 * 3600
    assert action.deadline() == pytest.approx(now + 48 * 3600)

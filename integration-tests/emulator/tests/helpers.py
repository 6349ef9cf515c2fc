"""Test helpers: groups with hooks, hook queues, message draining."""

from __future__ import annotations

import json
import time
from typing import Any

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


def make_queue(sqs: Any, name: str = "hooks") -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def make_group(
    asg: Any,
    name: str = "db",
    desired: int = 1,
    azs: list[str] | None = None,
    subnets: list[str] | None = None,
    max_size: int = 4,
) -> None:
    try:
        asg.create_launch_configuration(LaunchConfigurationName="lc", ImageId="ami-12345678", InstanceType="t3.micro")
    except asg.exceptions.AlreadyExistsFault:
        pass
    kwargs: dict[str, Any] = dict(
        AutoScalingGroupName=name,
        LaunchConfigurationName="lc",
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=desired,
    )
    if subnets:
        kwargs["VPCZoneIdentifier"] = ",".join(subnets)
    else:
        kwargs["AvailabilityZones"] = azs or AZS
    asg.create_auto_scaling_group(**kwargs)


def put_hook(asg: Any, transition: str, arn: str | None, name: str | None = None, group: str = "db", **extra: Any) -> str:
    name = name or ("launch" if transition == LAUNCHING else "terminate")
    kwargs: dict[str, Any] = dict(AutoScalingGroupName=group, LifecycleHookName=name, LifecycleTransition=transition)
    if arn:
        kwargs["NotificationTargetARN"] = arn
        kwargs["RoleARN"] = "arn:aws:iam::123456789012:role/hooks"
    kwargs.update(extra)
    asg.put_lifecycle_hook(**kwargs)
    return name


def receive(sqs: Any, url: str, count: int, timeout: float = 5.0, skip_tests: bool = True) -> list[dict[str, Any]]:
    """Receive and delete ``count`` messages (bodies parsed); TEST_NOTIFICATIONs skipped by default."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for msg in resp.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            body = json.loads(msg["Body"])
            if skip_tests and body.get("Event") == "autoscaling:TEST_NOTIFICATION":
                continue
            out.append(body)
        if len(out) < count:
            time.sleep(0.05)
    assert len(out) >= count, f"expected {count} messages, got {out}"
    return out


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = []
    for msg in resp.get("Messages", []):
        sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
        bodies.append(json.loads(msg["Body"]))
    return bodies


def instances(asg: Any, group: str = "db") -> list[dict[str, Any]]:
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return groups[0]["Instances"] if groups else []


def states(asg: Any, group: str = "db") -> dict[str, str]:
    return {i["InstanceId"]: i["LifecycleState"] for i in instances(asg, group)}


def ec2_state(ec2: Any, instance_id: str) -> str:
    res = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"]


def actions(emulator: Any) -> list[dict[str, Any]]:
    return emulator.ok("GET", "lifecycle")["actions"]


def complete(asg: Any, body: dict[str, Any], result: str = "CONTINUE") -> None:
    """Complete the lifecycle action a hook message announced, by its token."""
    asg.complete_lifecycle_action(
        AutoScalingGroupName=body["AutoScalingGroupName"],
        LifecycleHookName=body["LifecycleHookName"],
        LifecycleActionToken=body["LifecycleActionToken"],
        LifecycleActionResult=result,
    )

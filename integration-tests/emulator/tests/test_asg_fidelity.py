"""Auto Scaling behaviours moto had right that the extension once broke (found by scripts/moto-suites)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import wait_for
from helpers import LAUNCHING, TERMINATING, drain, ec2_state, instances, make_group, make_queue, put_hook, receive, states


@pytest.fixture
def lbs(emulator: Any, ec2: Any, asg: Any) -> dict[str, Any]:
    """A group ``db`` of 2 (no hooks yet) behind a classic ELB ``web`` and a target group."""
    elb, elbv2 = emulator.client("elb"), emulator.client("elbv2")
    elb.create_load_balancer(
        LoadBalancerName="web",
        Listeners=[{"Protocol": "tcp", "LoadBalancerPort": 80, "InstancePort": 8080}],
        AvailabilityZones=["us-east-1a"],
    )
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    tg = elbv2.create_target_group(Name="web-tg", Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0]
    make_group(asg, desired=2, azs=["us-east-1a"])
    asg.attach_load_balancers(AutoScalingGroupName="db", LoadBalancerNames=["web"])
    asg.attach_load_balancer_target_groups(AutoScalingGroupName="db", TargetGroupARNs=[tg["TargetGroupArn"]])
    return {"elb": elb, "elbv2": elbv2, "tg": tg["TargetGroupArn"]}


def _registered(lbs: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(instances of the classic ELB, targets of the target group)."""
    desc = lbs["elb"].describe_load_balancers(LoadBalancerNames=["web"])["LoadBalancerDescriptions"][0]
    health = lbs["elbv2"].describe_target_health(TargetGroupArn=lbs["tg"])["TargetHealthDescriptions"]
    return {i["InstanceId"] for i in desc["Instances"]}, {t["Target"]["Id"] for t in health}


def _in_service(asg: Any) -> set[str]:
    return {i for i, s in states(asg).items() if s == "InService"}


@pytest.mark.parametrize("decrement", [False, True])
def test_terminate_deregisters_and_registers_the_replacement(asg: Any, lbs: dict[str, Any], decrement: bool) -> None:
    old = sorted(_in_service(asg))[0]
    assert _registered(lbs) == (_in_service(asg), _in_service(asg))
    asg.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=decrement)
    serving = _in_service(asg)
    assert old not in serving and len(serving) == (1 if decrement else 2)
    assert _registered(lbs) == (serving, serving)


def test_hooks_keep_the_lb_to_in_service_members(asg: Any, sqs: Any, lbs: dict[str, Any]) -> None:
    url, arn = make_queue(sqs)
    put_hook(asg, TERMINATING, arn)
    put_hook(asg, LAUNCHING, arn)
    drain(sqs, url)
    old = sorted(_in_service(asg))[0]
    asg.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=False)
    assert states(asg)[old] == "Terminating:Wait"
    elb_ids, targets = _registered(lbs)
    assert old not in elb_ids and old not in targets  # deregistered before the terminate hook
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="terminate",
                                  InstanceId=old, LifecycleActionResult="CONTINUE")
    [new] = [i for i, s in states(asg).items() if s == "Pending:Wait"]
    assert new not in _registered(lbs)[0]  # not before its launch hook completes
    receive(sqs, url, 2)
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="launch",
                                  InstanceId=new, LifecycleActionResult="CONTINUE")
    assert _registered(lbs) == (_in_service(asg), _in_service(asg)) and new in _in_service(asg)


def test_mixed_instances_count_weighted_capacity(ec2: Any, asg: Any) -> None:
    ec2.create_launch_template(LaunchTemplateName="ltmixed", LaunchTemplateData={"ImageId": "ami-12345678"})
    policy = {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateName": "ltmixed", "Version": "$Latest"},
            "Overrides": [{"InstanceType": "m5.large", "WeightedCapacity": "4"}],
        },
        "InstancesDistribution": {"OnDemandBaseCapacity": 8, "OnDemandPercentageAboveBaseCapacity": 0},
    }
    asg.create_auto_scaling_group(AutoScalingGroupName="mixed", MinSize=0, MaxSize=40, DesiredCapacity=8,
                                  AvailabilityZones=["us-east-1a"], MixedInstancesPolicy=policy)
    assert len(instances(asg, "mixed")) == 2  # 8 units of weight 4
    asg.set_desired_capacity(AutoScalingGroupName="mixed", DesiredCapacity=16)
    assert len(instances(asg, "mixed")) == 4
    asg.set_desired_capacity(AutoScalingGroupName="mixed", DesiredCapacity=5)
    assert len([s for s in states(asg, "mixed").values() if s == "InService"]) == 2  # ceil(5 / 4)


def test_unhealthy_member_stays_visible_until_terminated(emulator: Any, ec2: Any, asg: Any) -> None:
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 0.6})
    make_group(asg, desired=1)
    [old] = states(asg)
    asg.set_instance_health(InstanceId=old, HealthStatus="Unhealthy")
    members = {i["InstanceId"]: i for i in instances(asg)}
    assert members[old]["HealthStatus"] == "Unhealthy"
    assert members[old]["LifecycleState"].startswith("Terminating")
    assert ec2_state(ec2, old) == "shutting-down"
    [new] = [i for i in members if i != old]  # the replacement launched once it was terminated
    assert members[new]["LifecycleState"] == "InService"
    wait_for(lambda: old not in states(asg), timeout=5)
    assert ec2_state(ec2, old) == "terminated" and states(asg) == {new: "InService"}


def test_unhealthy_member_waits_on_the_terminate_hook(asg: Any, sqs: Any, ec2: Any) -> None:
    url, arn = make_queue(sqs)
    make_group(asg, desired=1)
    put_hook(asg, TERMINATING, arn)
    drain(sqs, url)
    [old] = states(asg)
    asg.set_instance_health(InstanceId=old, HealthStatus="Unhealthy")
    [member] = instances(asg)
    assert (member["InstanceId"], member["LifecycleState"], member["HealthStatus"]) == (old, "Terminating:Wait", "Unhealthy")
    [msg] = receive(sqs, url, 1)
    assert msg["EC2InstanceId"] == old and ec2_state(ec2, old) == "running"
    asg.complete_lifecycle_action(AutoScalingGroupName="db", LifecycleHookName="terminate",
                                  InstanceId=old, LifecycleActionResult="CONTINUE")
    [(new, lifecycle_state)] = states(asg).items()
    assert new != old and lifecycle_state == "InService" and ec2_state(ec2, old) == "terminated"


def test_terminating_a_standby_instance_with_decrement(asg: Any, ec2: Any) -> None:
    make_group(asg, desired=2)
    standby = sorted(states(asg))[0]
    asg.enter_standby(AutoScalingGroupName="db", InstanceIds=[standby], ShouldDecrementDesiredCapacity=False)
    assert len(states(asg)) == 3  # a replacement joined for the Standby instance
    asg.terminate_instance_in_auto_scaling_group(InstanceId=standby, ShouldDecrementDesiredCapacity=True)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["db"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1
    assert [(i["InstanceId"] != standby, i["LifecycleState"]) for i in group["Instances"]] == [(True, "InService")]
    assert ec2_state(ec2, standby) == "terminated"

"""Instance refreshes: ReplaceRootVolume keeps the instance and its volumes; Rolling launches first above 100 %."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import error_code, wait_for
from helpers import LAUNCHING, TERMINATING, actions, complete, drain, ec2_state, make_group, make_queue, put_hook, receive, states


def refresh_status(asg):
    return asg.describe_instance_refreshes(AutoScalingGroupName="db")["InstanceRefreshes"][0]["Status"]


def in_service_group(asg, sqs):
    url, arn = make_queue(sqs)
    make_group(asg, desired=1, max_size=2)
    (iid, _), = states(asg).items()
    put_hook(asg, LAUNCHING, arn)
    put_hook(asg, TERMINATING, arn)
    return url, iid


def test_replace_root_volume_keeps_the_instance_and_its_data_volume(asg, ec2, sqs):
    url, iid = in_service_group(asg, sqs)
    vol = ec2.create_volume(AvailabilityZone=ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"], Size=10)["VolumeId"]
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")

    asg.start_instance_refresh(AutoScalingGroupName="db", Strategy="ReplaceRootVolume")

    [stop] = receive(sqs, url, 1, timeout=10)
    assert (stop["LifecycleTransition"], stop["EC2InstanceId"], stop.get("Action")) == (TERMINATING, iid, "ReplaceRootVolume")
    assert (stop["Origin"], stop["Destination"]) == ("AutoScalingGroup", "AutoScalingGroup")
    assert states(asg) == {iid: "ReplacingRootVolume:Wait"}
    assert refresh_status(asg) == "InProgress"
    complete(asg, stop)

    [boot] = receive(sqs, url, 1)
    assert (boot["LifecycleTransition"], boot["EC2InstanceId"], boot.get("Action")) == (LAUNCHING, iid, "ReplaceRootVolume")
    assert states(asg) == {iid: "Pending:Wait"}
    assert ec2_state(ec2, iid) == "running"
    complete(asg, boot)

    wait_for(lambda: refresh_status(asg) == "Successful")
    assert states(asg) == {iid: "InService"}
    [att] = ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"]
    assert (att["InstanceId"], att["State"]) == (iid, "attached")


def test_rolling_above_100_percent_launches_before_it_terminates(asg, sqs):
    url, old = in_service_group(asg, sqs)

    asg.start_instance_refresh(
        AutoScalingGroupName="db", Strategy="Rolling",
        Preferences={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
    )

    [launch] = receive(sqs, url, 1, timeout=10)
    new = launch["EC2InstanceId"]
    assert launch["LifecycleTransition"] == LAUNCHING and new != old
    assert states(asg) == {old: "InService", new: "Pending:Wait"}, "the old one stays until the new one serves"
    complete(asg, launch)
    [term] = receive(sqs, url, 1, timeout=10)
    assert (term["LifecycleTransition"], term["EC2InstanceId"]) == (TERMINATING, old)
    complete(asg, term)
    wait_for(lambda: refresh_status(asg) == "Successful")
    assert states(asg) == {new: "InService"}


def test_rolling_at_100_percent_terminates_first(asg, sqs):
    url, old = in_service_group(asg, sqs)

    asg.start_instance_refresh(AutoScalingGroupName="db", Strategy="Rolling", Preferences={"MinHealthyPercentage": 0})

    [term] = receive(sqs, url, 1, timeout=10)
    assert (term["LifecycleTransition"], term["EC2InstanceId"]) == (TERMINATING, old)
    assert states(asg) == {old: "Terminating:Wait"}
    complete(asg, term)
    [launch] = receive(sqs, url, 1)
    complete(asg, launch)
    wait_for(lambda: refresh_status(asg) == "Successful")


def test_a_second_refresh_is_refused_and_a_refresh_can_be_cancelled(asg, sqs):
    in_service_group(asg, sqs)
    asg.start_instance_refresh(AutoScalingGroupName="db", Strategy="ReplaceRootVolume")
    with pytest.raises(ClientError) as exc:
        asg.start_instance_refresh(AutoScalingGroupName="db")
    assert error_code(exc) == "ValidationError"
    asg.cancel_instance_refresh(AutoScalingGroupName="db")
    assert refresh_status(asg) == "Cancelled"


def test_standby_and_detach_fire_no_hooks(asg, sqs, emulator):
    url, iid = in_service_group(asg, sqs)
    asg.enter_standby(AutoScalingGroupName="db", InstanceIds=[iid], ShouldDecrementDesiredCapacity=True)
    assert states(asg) == {iid: "Standby"}
    asg.exit_standby(AutoScalingGroupName="db", InstanceIds=[iid])
    assert states(asg) == {iid: "InService"}
    asg.detach_instances(AutoScalingGroupName="db", InstanceIds=[iid], ShouldDecrementDesiredCapacity=True)
    assert states(asg) == {}
    assert actions(emulator) == [], "no lifecycle action"
    assert [m for m in drain(sqs, url) if m.get("Event") != "autoscaling:TEST_NOTIFICATION"] == []


def test_the_maintenance_policy_is_kept_and_a_refresh_follows_it(asg, sqs):
    url, old = in_service_group(asg, sqs)
    asg.update_auto_scaling_group(
        AutoScalingGroupName="db",
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
    )
    [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["db"])["AutoScalingGroups"]
    assert group["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200}

    asg.start_instance_refresh(AutoScalingGroupName="db", Strategy="Rolling")

    [launch] = receive(sqs, url, 1, timeout=10)
    assert launch["LifecycleTransition"] == LAUNCHING, "launch first, as the policy says"
    assert states(asg)[old] == "InService"
    with pytest.raises(ClientError) as exc:
        asg.update_auto_scaling_group(
            AutoScalingGroupName="db",
            InstanceMaintenancePolicy={"MinHealthyPercentage": 50, "MaxHealthyPercentage": 300},
        )
    assert error_code(exc) == "ValidationError"

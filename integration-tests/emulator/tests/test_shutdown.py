"""Writes across instance termination: Terminating:Wait, the shutting-down phase, every terminate path."""

from __future__ import annotations

from typing import Any

from conftest import wait_for
from helpers import LAUNCHING, TERMINATING, ec2_state, make_group, put_hook, states
from test_data import refused, vdata, write, write_instance
from test_ebs import run, vol_state, volume


def _attach(ec2: Any, iid: str, device: str = "/dev/sdf") -> str:
    az = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]
    vid = volume(ec2, az)
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device=device)
    return vid


def _root(ec2: Any, iid: str) -> str:
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]


def _volume_ids(ec2: Any) -> set[str]:
    return {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}


def _terminating_wait(asg: Any, ec2: Any, **hook: Any) -> tuple[str, str]:
    make_group(asg, desired=1)
    put_hook(asg, TERMINATING, None, **hook)
    [iid] = states(asg)
    vid = _attach(ec2, iid)
    asg.terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=True)
    assert states(asg) == {iid: "Terminating:Wait"}
    return iid, vid


def _continue(asg: Any, iid: str) -> None:
    asg.complete_lifecycle_action(
        AutoScalingGroupName="db", LifecycleHookName="terminate", InstanceId=iid, LifecycleActionResult="CONTINUE"
    )


def test_terminating_wait_writable_until_continue(asg, ec2, emulator):
    iid, vid = _terminating_wait(asg, ec2)
    assert ec2_state(ec2, iid) == "running"
    assert write(emulator, vid).status_code == 200
    assert write_instance(emulator, iid).json()["volumes"] == {vid: 2}
    _continue(asg, iid)
    assert ec2_state(ec2, iid) == "terminated"
    refused(write(emulator, vid), vid, "available")
    refused(write_instance(emulator, iid), iid, "terminated")
    assert vdata(emulator, vid)["counter"] == 2


def test_terminate_instances_shutdown_phase(ec2, emulator):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 1.0})
    iid = run(ec2)
    root = _root(ec2, iid)
    vid = _attach(ec2, iid)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=alloc, InstanceId=iid)
    assert write(emulator, vid, 3).status_code == 200
    resp = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert resp["CurrentState"]["Name"] == "shutting-down" and resp["PreviousState"]["Name"] == "running"
    assert ec2_state(ec2, iid) == "shutting-down"
    refused(write(emulator, vid), vid, iid, "shutting-down")
    refused(write_instance(emulator, iid), iid, "shutting-down")
    v = vol_state(ec2, vid)
    assert v["State"] == "in-use" and v["Attachments"][0]["State"] == "attached"
    assert root in _volume_ids(ec2)
    assert ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]["InstanceId"] == iid
    ec2.terminate_instances(InstanceIds=[iid])  # again: still on its way, nothing changes
    assert ec2_state(ec2, iid) == "shutting-down"
    wait_for(lambda: ec2_state(ec2, iid) == "terminated", timeout=3)
    assert vol_state(ec2, vid)["State"] == "available" and vol_state(ec2, vid)["Attachments"] == []
    assert root not in _volume_ids(ec2)  # DeleteOnTermination
    assert not ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0].get("InstanceId")
    assert vdata(emulator, vid)["counter"] == 3


def test_shutdown_end_seen_by_control_endpoints(ec2, emulator):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 0.3})
    iid = run(ec2)
    vid = _attach(ec2, iid)
    ec2.terminate_instances(InstanceIds=[iid])
    wait_for(lambda: vdata(emulator, vid)["state"] == "available", timeout=3)  # control endpoints only
    assert ec2_state(ec2, iid) == "terminated"


def test_asg_continue_then_shutdown_phase(asg, ec2, emulator):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 1.0})
    iid, vid = _terminating_wait(asg, ec2)
    assert write(emulator, vid).status_code == 200
    _continue(asg, iid)
    assert ec2_state(ec2, iid) == "shutting-down"
    refused(write(emulator, vid), vid, "shutting-down")
    assert vol_state(ec2, vid)["State"] == "in-use"
    wait_for(lambda: ec2_state(ec2, iid) == "terminated", timeout=3)
    assert vol_state(ec2, vid)["State"] == "available"


def test_launch_abandon_goes_through_shutdown(asg, ec2, emulator):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 1.0})
    make_group(asg, desired=0)
    put_hook(asg, LAUNCHING, None)
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=1)
    [(iid, lifecycle_state)] = states(asg).items()
    assert lifecycle_state == "Pending:Wait"
    vid = _attach(ec2, iid)
    assert write(emulator, vid).status_code == 200  # Pending:Wait is EC2 running
    asg.complete_lifecycle_action(
        AutoScalingGroupName="db", LifecycleHookName="launch", InstanceId=iid, LifecycleActionResult="ABANDON"
    )
    assert ec2_state(ec2, iid) == "shutting-down"
    refused(write(emulator, vid), "shutting-down")
    wait_for(lambda: ec2_state(ec2, iid) == "terminated", timeout=3)
    assert vol_state(ec2, vid)["State"] == "available"


def test_expiry_goes_through_shutdown(asg, ec2, emulator):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 1.0, "hook_timeout_scale": 0.1})
    iid, vid = _terminating_wait(asg, ec2, HeartbeatTimeout=10)  # expires after 1 s
    assert write(emulator, vid).status_code == 200
    wait_for(lambda: ec2_state(ec2, iid) != "running", timeout=5)
    assert ec2_state(ec2, iid) == "shutting-down"
    refused(write(emulator, vid), "shutting-down")
    wait_for(lambda: ec2_state(ec2, iid) == "terminated", timeout=3)
    assert vol_state(ec2, vid)["State"] == "available"


def test_zero_shutdown_is_instant(ec2, emulator):
    iid = run(ec2)
    vid = _attach(ec2, iid)
    ec2.terminate_instances(InstanceIds=[iid])
    assert ec2_state(ec2, iid) == "terminated"
    assert vol_state(ec2, vid)["State"] == "available"

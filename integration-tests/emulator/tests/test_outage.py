"""AZ outage: held snapshots, detaches and shutdowns, and how each resumes once the outage ends.

Timings are short configured ones; "resumes with the time it had left" is checked
by the state right after the end (still pending / detaching / shutting-down) and
by how long after the end it completes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import error_code, wait_for
from helpers import TERMINATING, ec2_state, instances, make_group, put_hook, states
from test_data import attached, refused, sdata, vdata, write, write_instance
from test_ebs import run, vol_state, volume

DOWN, UP = "us-east-1a", "us-east-1b"


def begin(emulator: Any, az: str = DOWN, mode: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"az": az} if mode is None else {"az": az, "snapshot_mode": mode}
    return emulator.ok("POST", "faults", {"az_outage": spec})


def end(emulator: Any) -> float:
    """End the outage; returns the (monotonic) time it ended."""
    assert emulator.ok("POST", "faults", {"az_outage": None}) == {}
    return time.monotonic()


def snap(ec2: Any, sid: str) -> tuple[str, int]:
    s = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    return s["State"], int(s["Progress"].rstrip("%"))


def seconds_until(predicate: Any, since: float, timeout: float = 5.0) -> float:
    """Wait for ``predicate``; how long after ``since`` it became true."""
    wait_for(predicate, timeout=timeout, interval=0.02)
    return time.monotonic() - since


def attachment(ec2: Any, vid: str) -> str | None:
    atts = vol_state(ec2, vid)["Attachments"]
    return atts[0]["State"] if atts else None


def root_volume(ec2: Any, iid: str) -> str:
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]


def volume_ids(ec2: Any) -> set[str]:
    return {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}


# -- control endpoint -----------------------------------------------------------
def test_outage_control_shapes(emulator):
    assert begin(emulator) == {"az_outage": {"az": DOWN, "snapshot_mode": "pending"}}
    assert begin(emulator, mode="error") == {"az_outage": {"az": DOWN, "snapshot_mode": "error"}}
    assert emulator.ok("GET", "faults") == {"az_outage": {"az": DOWN, "snapshot_mode": "error"}}
    assert emulator.ok("POST", "faults", {"az_outage": None}) == {}
    begin(emulator, UP)
    assert emulator.ok("DELETE", "faults") == {}


# -- 1 + 2: snapshots -----------------------------------------------------------
def test_in_flight_snapshot_held_then_completes_with_its_remaining_time(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 1.0})
    iid, vid = attached(ec2, DOWN)
    write(emulator, vid, 5)
    emulator.ok("POST", "config", {"snapshot_seconds": 0})
    done_before = ec2.create_snapshot(VolumeId=volume(ec2, DOWN))["SnapshotId"]  # completed: unaffected
    emulator.ok("POST", "config", {"snapshot_seconds": 1.0})
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    other = ec2.create_snapshot(VolumeId=volume(ec2, UP))["SnapshotId"]
    time.sleep(0.4)
    begin(emulator)  # ~0.6 s of its 1.0 s left
    time.sleep(1.0)  # well past its original completion time
    state, frozen = snap(ec2, sid)
    assert state == "pending" and 20 <= frozen <= 70
    assert snap(ec2, done_before) == ("completed", 100)
    assert snap(ec2, other) == ("completed", 100)  # other AZs are not affected
    time.sleep(0.2)
    assert snap(ec2, sid) == ("pending", frozen)  # progress does not move while held
    ended = end(emulator)
    assert snap(ec2, sid)[0] == "pending"  # not instantly completed
    took = seconds_until(lambda: snap(ec2, sid)[0] == "completed", ended)
    assert 0.4 <= took <= 2.0, took
    assert snap(ec2, sid) == ("completed", 100)
    assert sdata(emulator, sid) == {"snapshot_id": sid, "volume_id": vid, "counter": 5, "incremental": False,
                                    "state": "completed"}


def test_snapshots_created_during_outage_pending_until_after_it(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.5})
    iid, vid = attached(ec2, DOWN)
    write(emulator, vid, 3)
    begin(emulator, mode="pending")
    single = ec2.create_snapshot(VolumeId=vid)
    assert single["State"] == "pending"
    many = ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})["Snapshots"]
    assert len(many) == 2 and {s["State"] for s in many} == {"pending"}
    sids = [single["SnapshotId"]] + [s["SnapshotId"] for s in many]
    time.sleep(0.8)  # longer than snapshot_seconds
    assert {snap(ec2, sid) for sid in sids} == {("pending", 0)}
    ended = end(emulator)
    assert {snap(ec2, sid)[0] for sid in sids} == {"pending"}  # the whole 0.5 s counts from the end
    took = seconds_until(lambda: all(snap(ec2, sid)[0] == "completed" for sid in sids), ended)
    assert 0.35 <= took <= 2.0, took
    assert sdata(emulator, single["SnapshotId"])["counter"] == 3
    by_volume = {s["VolumeId"]: sdata(emulator, s["SnapshotId"])["counter"] for s in many}
    assert by_volume[vid] == 3


def test_error_mode_fails_in_flight_and_new_snapshots_for_good(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.5})
    iid, vid = attached(ec2, DOWN)
    write(emulator, vid, 4)
    in_flight = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    other = ec2.create_snapshot(VolumeId=volume(ec2, UP))["SnapshotId"]
    begin(emulator, mode="error")
    assert snap(ec2, in_flight)[0] == "error"
    created = ec2.create_snapshot(VolumeId=vid)
    assert created["State"] == "pending"  # accepted as AWS answers, failed from then on
    assert snap(ec2, created["SnapshotId"]) == ("error", 0)
    many = ec2.create_snapshots(InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": True})["Snapshots"]
    assert [s["State"] for s in many] == ["pending"]
    failed = [in_flight, created["SnapshotId"], many[0]["SnapshotId"]]
    assert {snap(ec2, sid)[0] for sid in failed} == {"error"}
    with pytest.raises(ClientError) as exc:
        ec2.create_volume(AvailabilityZone=DOWN, SnapshotId=in_flight)
    assert error_code(exc) == "IncorrectState" and "error" in exc.value.response["Error"]["Message"]
    end(emulator)
    time.sleep(0.8)
    assert {snap(ec2, sid)[0] for sid in failed} == {"error"}  # error stays error
    assert snap(ec2, other)[0] == "completed"
    assert {sdata(emulator, sid)["counter"] for sid in failed} == {4}


def test_switch_to_error_mode_fails_held_snapshots(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.3})
    begin(emulator)
    sid = ec2.create_snapshot(VolumeId=volume(ec2, DOWN))["SnapshotId"]
    assert snap(ec2, sid)[0] == "pending"
    begin(emulator, mode="error")
    assert snap(ec2, sid)[0] == "error"
    begin(emulator, mode="pending")  # back to pending: the failed one stays failed
    end(emulator)
    time.sleep(0.5)
    assert snap(ec2, sid)[0] == "error"


def test_outage_moved_to_another_az_releases_the_first(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.5})
    begin(emulator, DOWN)
    first = ec2.create_snapshot(VolumeId=volume(ec2, DOWN))["SnapshotId"]
    emulator.ok("POST", "config", {"snapshot_seconds": 5})
    second = ec2.create_snapshot(VolumeId=volume(ec2, UP))["SnapshotId"]
    time.sleep(0.6)
    assert snap(ec2, first)[0] == "pending"
    moved = time.monotonic()
    begin(emulator, UP)
    took = seconds_until(lambda: snap(ec2, first)[0] == "completed", moved)
    assert 0.35 <= took <= 2.0, took
    held = snap(ec2, second)
    assert held[0] == "pending"
    time.sleep(0.3)
    assert snap(ec2, second) == held  # held in us-east-1b now: progress frozen


# -- 3: writes --------------------------------------------------------------------
def test_writes_refused_during_outage_only(ec2, emulator):
    iid, vid = attached(ec2, DOWN)
    _, up = attached(ec2, UP)
    assert write(emulator, vid, 1).status_code == 200
    begin(emulator)
    refused(write(emulator, vid), vid, iid, DOWN, "outage")
    refused(write_instance(emulator, iid), iid, "outage")
    assert write(emulator, up).status_code == 200
    end(emulator)
    assert write(emulator, vid).json()["counter"] == 2
    assert vdata(emulator, vid)["writes"] == 2


# -- 4: detaches ------------------------------------------------------------------
def test_detach_started_during_outage_completes_after_it(ec2, emulator):
    iid, vid = attached(ec2, DOWN)
    begin(emulator)
    resp = ec2.detach_volume(VolumeId=vid)  # detach_seconds 0: still held
    assert resp["State"] == "detaching"
    time.sleep(0.4)
    assert vol_state(ec2, vid)["State"] == "in-use" and attachment(ec2, vid) == "detaching"
    with pytest.raises(ClientError) as exc:
        ec2.detach_volume(VolumeId=vid)
    assert error_code(exc) == "IncorrectState"
    end(emulator)
    assert vol_state(ec2, vid)["State"] == "available"  # no detach time was left
    assert vdata(emulator, vid)["state"] == "available"


def test_in_flight_detach_needs_its_remaining_time_after_the_outage(ec2, emulator):
    emulator.ok("POST", "config", {"detach_seconds": 0.8})
    iid, vid = attached(ec2, DOWN)
    ec2.detach_volume(VolumeId=vid)
    time.sleep(0.2)
    begin(emulator)  # ~0.6 s left
    time.sleep(1.0)
    assert attachment(ec2, vid) == "detaching"
    ended = end(emulator)
    assert attachment(ec2, vid) == "detaching"
    took = seconds_until(lambda: vol_state(ec2, vid)["State"] == "available", ended)
    assert 0.4 <= took <= 2.0, took


# -- 5: terminations --------------------------------------------------------------
@pytest.mark.parametrize("shutdown", [0.0, 0.5])
def test_terminate_instances_held_shutting_down(ec2, emulator, shutdown):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": shutdown})
    iid, vid = attached(ec2, DOWN)
    root = root_volume(ec2, iid)
    up = run(ec2, UP)
    begin(emulator)
    resp = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert resp["CurrentState"]["Name"] == "shutting-down"
    time.sleep(shutdown + 0.5)
    assert ec2_state(ec2, iid) == "shutting-down"
    assert vol_state(ec2, vid)["State"] == "in-use" and attachment(ec2, vid) == "attached"
    assert root in volume_ids(ec2)
    refused(write(emulator, vid), vid, "shutting-down")
    ec2.terminate_instances(InstanceIds=[up])  # other AZs terminate as usual
    if shutdown == 0:
        assert ec2_state(ec2, up) == "terminated"
    ended = end(emulator)
    took = seconds_until(lambda: ec2_state(ec2, iid) == "terminated", ended)
    assert shutdown - 0.15 <= took <= shutdown + 1.5, took
    assert vol_state(ec2, vid)["State"] == "available" and vol_state(ec2, vid)["Attachments"] == []
    assert root not in volume_ids(ec2)  # DeleteOnTermination
    assert vdata(emulator, vid)["counter"] == 0


def test_shutdown_in_progress_when_outage_begins_keeps_its_remaining_time(ec2, emulator):
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 1.0})
    iid, vid = attached(ec2, DOWN)
    ec2.terminate_instances(InstanceIds=[iid])
    time.sleep(0.3)
    begin(emulator)  # ~0.7 s left
    time.sleep(1.2)
    assert ec2_state(ec2, iid) == "shutting-down"
    ec2.detach_volume(VolumeId=vid)  # accepted, held like any detach in the AZ
    assert attachment(ec2, vid) == "detaching"
    ended = end(emulator)
    assert ec2_state(ec2, iid) == "shutting-down"
    took = seconds_until(lambda: ec2_state(ec2, iid) == "terminated", ended)
    assert 0.5 <= took <= 2.0, took
    assert vol_state(ec2, vid)["State"] == "available"


def test_autoscaling_terminate_flow_held_until_outage_ends(asg, ec2, emulator):
    make_group(asg, desired=1, azs=[DOWN])
    put_hook(asg, TERMINATING, None)
    [iid] = states(asg)
    _, vid = attached(ec2, DOWN, iid=iid)
    begin(emulator)
    asg.terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=False)
    assert states(asg) == {iid: "Terminating:Wait"}
    asg.complete_lifecycle_action(
        AutoScalingGroupName="db", LifecycleHookName="terminate", InstanceId=iid, LifecycleActionResult="CONTINUE"
    )
    time.sleep(0.5)
    assert ec2_state(ec2, iid) == "shutting-down"
    assert attachment(ec2, vid) == "attached"
    [(replacement, lifecycle_state)] = states(asg).items()  # the group moved on as usual
    assert replacement != iid and lifecycle_state == "InService"
    assert instances(asg)[0]["AvailabilityZone"] == DOWN  # launches may still go to the AZ (item 7)
    ended = end(emulator)
    seconds_until(lambda: ec2_state(ec2, iid) == "terminated", ended, timeout=2)
    assert vol_state(ec2, vid)["State"] == "available"
    assert states(asg) == {replacement: "InService"}
    assert ec2_state(ec2, replacement) == "running"


# -- 6: status checks -------------------------------------------------------------
def test_instances_in_the_az_impaired(ec2, emulator):
    down, up = run(ec2, DOWN), run(ec2, UP)
    begin(emulator)
    statuses = {s["InstanceId"]: s for s in ec2.describe_instance_status(InstanceIds=[down, up])["InstanceStatuses"]}
    for kind in ("InstanceStatus", "SystemStatus"):
        assert statuses[down][kind]["Status"] == "impaired"
        [detail] = statuses[down][kind]["Details"]
        assert detail["Name"] == "reachability" and detail["Status"] == "failed" and "ImpairedSince" in detail
        assert statuses[up][kind]["Status"] == "ok"
    end(emulator)
    statuses = ec2.describe_instance_status(InstanceIds=[down])["InstanceStatuses"]
    assert statuses[0]["InstanceStatus"]["Status"] == "ok"


# -- 7: launches ------------------------------------------------------------------
def test_launches_still_go_to_the_az_unless_placement_steers(asg, emulator):
    begin(emulator)
    make_group(asg, desired=1, azs=[DOWN, UP])
    assert [i["AvailabilityZone"] for i in instances(asg)] == [DOWN]
    emulator.ok("POST", "placement", {"group": "db", "az": UP})
    asg.set_desired_capacity(AutoScalingGroupName="db", DesiredCapacity=2)
    assert sorted(i["AvailabilityZone"] for i in instances(asg)) == [DOWN, UP]


def test_reset_ends_outage_and_forgets_held_state(ec2, emulator):
    begin(emulator)
    iid = run(ec2, DOWN)
    ec2.terminate_instances(InstanceIds=[iid])
    emulator.ok("POST", "reset")
    assert emulator.ok("GET", "faults") == {}
    assert ec2.describe_instances()["Reservations"] == []

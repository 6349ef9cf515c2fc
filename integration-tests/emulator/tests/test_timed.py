"""Timed states: snapshots, volume creation, attach and detach; CreateSnapshots tags."""

from __future__ import annotations

import time

from conftest import wait_for
from test_ebs import run, vol_state, volume


def test_snapshot_pending_with_progress(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 1.0})
    snap_id = ec2.create_snapshot(VolumeId=volume(ec2))["SnapshotId"]

    def snap():
        return ec2.describe_snapshots(SnapshotIds=[snap_id])["Snapshots"][0]

    first = snap()
    assert first["State"] == "pending"
    time.sleep(0.5)
    mid = snap()
    assert mid["State"] == "pending"
    assert 0 < int(mid["Progress"].rstrip("%")) < 100
    wait_for(lambda: snap()["State"] == "completed", timeout=3)
    assert snap()["Progress"] == "100%"
    ec2.create_volume(AvailabilityZone="us-east-1c", SnapshotId=snap_id)  # now allowed


def test_volume_creating_then_available(ec2, emulator):
    emulator.ok("POST", "config", {"volume_create_seconds": 0.4})
    vid = volume(ec2)
    assert vol_state(ec2, vid)["State"] == "creating"
    wait_for(lambda: vol_state(ec2, vid)["State"] == "available", timeout=3)


def test_attach_and_detach_timed(ec2, emulator):
    emulator.ok("POST", "config", {"attach_seconds": 0.4, "detach_seconds": 0.4})
    iid = run(ec2)
    vid = volume(ec2)
    assert ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")["State"] == "attaching"
    v = vol_state(ec2, vid)
    assert v["State"] == "in-use" and v["Attachments"][0]["State"] == "attaching"
    wait_for(lambda: vol_state(ec2, vid)["Attachments"][0]["State"] == "attached", timeout=3)
    ec2.detach_volume(VolumeId=vid, InstanceId=iid)
    v = vol_state(ec2, vid)
    assert v["State"] == "in-use" and v["Attachments"][0]["State"] == "detaching"
    wait_for(lambda: vol_state(ec2, vid)["State"] == "available", timeout=3)
    assert vol_state(ec2, vid)["Attachments"] == []


def test_create_snapshots_tags_and_timing(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 30})
    iid = run(ec2)
    vid = ec2.create_volume(
        AvailabilityZone="us-east-1a", Size=10,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "ferry:volume", "Value": "data"}]}],
    )["VolumeId"]
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    snaps = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": True},
        CopyTagsFromSource="volume",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "ferry:generation", "Value": "3"}]}],
    )["Snapshots"]
    assert [s["VolumeId"] for s in snaps] == [vid]
    described = ec2.describe_snapshots(SnapshotIds=[snaps[0]["SnapshotId"]])["Snapshots"][0]
    assert described["State"] == "pending"
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags == {"ferry:volume": "data", "ferry:generation": "3"}

"""Data on volumes: write rule per state, point-in-time snapshots, restore, instance writes, errors."""

from __future__ import annotations

from typing import Any

import requests
from conftest import wait_for
from test_ebs import run, vol_state, volume


def write(emulator: Any, vid: str, value: Any = "absent") -> requests.Response:
    return emulator.control("POST", f"volumes/{vid}/write", {} if value == "absent" else {"value": value})


def write_instance(emulator: Any, iid: str, value: Any = "absent") -> requests.Response:
    return emulator.control("POST", f"instances/{iid}/write", {} if value == "absent" else {"value": value})


def vdata(emulator: Any, vid: str) -> dict[str, Any]:
    return emulator.ok("GET", f"volumes/{vid}/data")


def sdata(emulator: Any, sid: str) -> dict[str, Any]:
    return emulator.ok("GET", f"snapshots/{sid}/data")


def refused(resp: requests.Response, *words: str) -> str:
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["refused"] is True
    for word in words:
        assert word in body["error"], body
    return body["error"]


def attached(ec2: Any, az: str = "us-east-1a", device: str = "/dev/sdf", iid: str | None = None) -> tuple[str, str]:
    iid = iid or run(ec2, az)
    vid = volume(ec2, az)
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device=device)
    return iid, vid


def test_new_volume_empty_then_writes(ec2, emulator):
    iid = run(ec2)
    vid = volume(ec2)
    assert vdata(emulator, vid) == {
        "volume_id": vid, "counter": 0, "writes": 0, "source_snapshot": None, "state": "available",
    }
    refused(write(emulator, vid), vid, "available")
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    resp = write(emulator, vid)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"volume_id": vid, "counter": 1, "writes": 1}
    assert write(emulator, vid, 10).json() == {"volume_id": vid, "counter": 10, "writes": 2}
    assert write(emulator, vid).json()["counter"] == 11
    assert write(emulator, vid, 0).json() == {"volume_id": vid, "counter": 0, "writes": 4}
    assert vdata(emulator, vid)["state"] == "in-use"


def test_refused_while_creating_attaching_detaching(ec2, emulator):
    emulator.ok("POST", "config", {"volume_create_seconds": 0.3, "attach_seconds": 0.3, "detach_seconds": 0.3})
    iid = run(ec2)
    vid = volume(ec2)
    refused(write(emulator, vid), vid, "creating")
    wait_for(lambda: vol_state(ec2, vid)["State"] == "available", timeout=3)
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    refused(write(emulator, vid), vid, "attaching", iid)
    wait_for(lambda: vol_state(ec2, vid)["Attachments"][0]["State"] == "attached", timeout=3)
    assert write(emulator, vid).status_code == 200
    ec2.detach_volume(VolumeId=vid)
    refused(write(emulator, vid), vid, "detaching", iid)
    wait_for(lambda: vol_state(ec2, vid)["State"] == "available", timeout=3)
    refused(write(emulator, vid), vid, "available")
    assert vdata(emulator, vid)["counter"] == 1 and vdata(emulator, vid)["writes"] == 1


def test_stop_and_start_instance(ec2, emulator):
    iid, vid = attached(ec2)
    assert write(emulator, vid).status_code == 200
    ec2.stop_instances(InstanceIds=[iid])
    refused(write(emulator, vid), vid, iid, "stopped")
    refused(write_instance(emulator, iid), iid, "stopped")
    ec2.start_instances(InstanceIds=[iid])
    assert write(emulator, vid).json()["counter"] == 2


def test_terminated_instance_refuses(ec2, emulator):
    iid, vid = attached(ec2)
    ec2.terminate_instances(InstanceIds=[iid])
    refused(write(emulator, vid), vid, "available")
    refused(write_instance(emulator, iid), iid, "terminated")


def test_az_outage_refuses_writes(ec2, emulator):
    iid, vid = attached(ec2, "us-east-1a")
    other_iid, other = attached(ec2, "us-east-1b")
    emulator.ok("POST", "faults", {"az_outage": {"az": "us-east-1a"}})
    refused(write(emulator, vid), vid, iid, "us-east-1a", "outage")
    refused(write_instance(emulator, iid), iid, "outage")
    assert write(emulator, other).status_code == 200
    emulator.ok("POST", "faults", {"az_outage": None})
    assert write(emulator, vid).status_code == 200


def test_snapshot_is_point_in_time_and_restores(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.3})
    iid, vid = attached(ec2)
    write(emulator, vid, 5)
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    assert write(emulator, vid, 6).status_code == 200  # after CreateSnapshot: not in it
    assert sdata(emulator, sid) == {
        "snapshot_id": sid, "volume_id": vid, "counter": 5, "incremental": False, "state": "pending",
    }
    wait_for(lambda: sdata(emulator, sid)["state"] == "completed", timeout=3)
    assert write(emulator, vid, 7).status_code == 200
    assert sdata(emulator, sid)["counter"] == 5
    assert vdata(emulator, vid)["counter"] == 7
    restored = ec2.create_volume(AvailabilityZone="us-east-1b", SnapshotId=sid)["VolumeId"]
    assert vdata(emulator, restored) == {
        "volume_id": restored, "counter": 5, "writes": 0, "source_snapshot": sid, "state": "available",
    }
    assert vdata(emulator, volume(ec2))["counter"] == 0


def test_create_snapshots_captures_the_set_at_one_instant(ec2, emulator):
    emulator.ok("POST", "config", {"snapshot_seconds": 0.3})
    iid, a = attached(ec2, device="/dev/sdf")
    _, b = attached(ec2, device="/dev/sdg", iid=iid)
    write(emulator, a, 3)
    write(emulator, b, 8)
    snaps = ec2.create_snapshots(InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": True})["Snapshots"]
    write_instance(emulator, iid, 9)
    got = {s["VolumeId"]: sdata(emulator, s["SnapshotId"])["counter"] for s in snaps}
    assert got == {a: 3, b: 8}
    write_instance(emulator, iid, 10)
    snaps = ec2.create_snapshots(InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": True})["Snapshots"]
    write_instance(emulator, iid, 11)
    assert {sdata(emulator, s["SnapshotId"])["counter"] for s in snaps} == {10}


def test_instance_write_is_atomic(ec2, emulator):
    emulator.ok("POST", "config", {"detach_seconds": 30})
    iid, a = attached(ec2, device="/dev/sdf")
    _, b = attached(ec2, device="/dev/sdg", iid=iid)
    resp = write_instance(emulator, iid)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"instance_id": iid, "counter": 1, "volumes": {a: 1, b: 1}}
    write(emulator, a, 9)
    assert write_instance(emulator, iid).json() == {"instance_id": iid, "counter": 10, "volumes": {a: 10, b: 10}}
    assert write_instance(emulator, iid, 4).json()["volumes"] == {a: 4, b: 4}
    ec2.detach_volume(VolumeId=b)
    refused(write_instance(emulator, iid, 5), iid, b, "detaching")
    assert vdata(emulator, a)["counter"] == 4 and vdata(emulator, a)["writes"] == 4  # nothing written
    assert vdata(emulator, b)["counter"] == 4 and vdata(emulator, b)["writes"] == 3


def test_instance_write_needs_a_data_volume(ec2, emulator):
    iid = run(ec2)
    refused(write_instance(emulator, iid), iid, "no attached non-root volume")
    root = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]
    assert write(emulator, root["Ebs"]["VolumeId"]).status_code == 200  # the root itself is writable


def test_incremental_snapshot_timing(ec2, emulator):
    cfg = emulator.ok("POST", "config", {"snapshot_seconds": 1.5, "incremental_snapshot_seconds": 0.3})
    assert cfg["incremental_snapshot_seconds"] == 0.3
    a, b = volume(ec2), volume(ec2)
    first = ec2.create_snapshot(VolumeId=a)["SnapshotId"]
    second = ec2.create_snapshot(VolumeId=a)["SnapshotId"]  # the first is not completed yet: full
    assert sdata(emulator, first)["incremental"] is False
    assert sdata(emulator, second)["incremental"] is False
    wait_for(lambda: sdata(emulator, first)["state"] == "completed", timeout=5)
    incremental = ec2.create_snapshot(VolumeId=a)["SnapshotId"]
    full = ec2.create_snapshot(VolumeId=b)["SnapshotId"]
    assert sdata(emulator, incremental)["incremental"] is True
    assert sdata(emulator, full)["incremental"] is False
    assert sdata(emulator, incremental)["state"] == "pending"
    wait_for(lambda: sdata(emulator, incremental)["state"] == "completed", timeout=1.1)
    assert sdata(emulator, full)["state"] == "pending"
    restored = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=first)["VolumeId"]
    of_restored = ec2.create_snapshot(VolumeId=restored)["SnapshotId"]
    assert sdata(emulator, of_restored)["incremental"] is True
    wait_for(lambda: sdata(emulator, of_restored)["state"] == "completed", timeout=1.1)


def test_incremental_defaults_to_snapshot_seconds(ec2, emulator):
    vid = volume(ec2)
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]  # snapshot_seconds 0: completed at once
    emulator.ok("POST", "config", {"snapshot_seconds": 30})
    restored = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)["VolumeId"]
    for source in (vid, restored):
        snap = ec2.create_snapshot(VolumeId=source)
        assert sdata(emulator, snap["SnapshotId"])["incremental"] is True
        assert snap["State"] == "pending"


def test_config_keys_validated(emulator):
    cfg = emulator.ok("GET", "config")
    assert cfg["incremental_snapshot_seconds"] is None and cfg["instance_shutdown_seconds"] == 0
    for body in (
        {"incremental_snapshot_seconds": -1},
        {"incremental_snapshot_seconds": "1"},
        {"instance_shutdown_seconds": None},
        {"instance_shutdown_seconds": -0.5},
        {"instance_shutdown_seconds": True},
    ):
        resp = emulator.control("POST", "config", body)
        assert resp.status_code == 400, body
        assert next(iter(body)) in resp.json()["error"]
    got = emulator.ok("POST", "config", {"incremental_snapshot_seconds": 2, "instance_shutdown_seconds": 1})
    assert got["incremental_snapshot_seconds"] == 2.0 and got["instance_shutdown_seconds"] == 1.0
    assert emulator.ok("POST", "config", {"incremental_snapshot_seconds": None})["incremental_snapshot_seconds"] is None


def test_error_shapes(ec2, emulator):
    iid, vid = attached(ec2)
    for body, word in (({"value": -1}, "value"), ({"value": "3"}, "value"), ({"value": True}, "value"),
                       ({"value": 1.5}, "value"), ({"valeu": 1}, "valeu"), ([1], "object")):
        for path in (f"volumes/{vid}/write", f"instances/{iid}/write"):
            resp = emulator.control("POST", path, body)
            assert resp.status_code == 400 and word in resp.json()["error"], (path, body, resp.text)
    resp = requests.post(f"{emulator.url}/_emulator/volumes/{vid}/write", data=b"{nope", timeout=5)
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]
    for method, path, ident in (
        ("POST", "volumes/vol-0123456789abcdef0/write", "vol-0123456789abcdef0"),
        ("GET", "volumes/vol-0123456789abcdef0/data", "vol-0123456789abcdef0"),
        ("POST", "instances/i-0123456789abcdef0/write", "i-0123456789abcdef0"),
        ("GET", "snapshots/snap-0123456789abcdef0/data", "snap-0123456789abcdef0"),
    ):
        resp = emulator.control(method, path, {} if method == "POST" else None)
        assert resp.status_code == 404 and ident in resp.json()["error"], resp.text
    assert emulator.control("GET", f"volumes/{vid}/write").status_code == 404
    assert vdata(emulator, vid)["writes"] == 0
    assert write(emulator, vid, None).json()["counter"] == 1  # null value = counter + 1


def test_reset_clears_data(ec2, emulator):
    iid, vid = attached(ec2)
    write(emulator, vid, 42)
    emulator.ok("POST", "config", {"instance_shutdown_seconds": 5, "incremental_snapshot_seconds": 1})
    emulator.ok("POST", "reset")
    assert emulator.control("GET", f"volumes/{vid}/data").status_code == 404
    cfg = emulator.ok("GET", "config")
    assert cfg["instance_shutdown_seconds"] == 0 and cfg["incremental_snapshot_seconds"] is None
    assert vdata(emulator, volume(ec2))["counter"] == 0

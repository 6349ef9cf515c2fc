"""The EC2 answers the contract (crates/snapshot/contract/ec2.toml) found moto giving differently from AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import error_code


def run(ec2, az="us-east-1a"):
    return ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": az})[
        "Instances"
    ][0]["InstanceId"]


def state(ec2, iid):
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_restore_smaller_than_the_snapshot_is_invalid(ec2):
    vid = ec2.create_volume(AvailabilityZone="us-east-1a", Size=12)["VolumeId"]
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    with pytest.raises(ClientError) as exc:
        ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid, Size=4)
    assert error_code(exc) == "InvalidParameterValue"
    assert "smaller than snapshot" in exc.value.response["Error"]["Message"]
    assert not [v for v in ec2.describe_volumes()["Volumes"] if v.get("SnapshotId") == sid]
    grown = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid, Size=20)
    assert grown["Size"] == 20
    assert ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)["Size"] == 12


def test_a_terminated_instance_is_not_stopped(ec2):
    iid = run(ec2)
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as exc:
        ec2.stop_instances(InstanceIds=[iid])
    assert error_code(exc) == "IncorrectInstanceState"
    assert state(ec2, iid) == "terminated"


def test_stopping_a_stopped_instance_is_fine(ec2):
    iid = run(ec2)
    ec2.stop_instances(InstanceIds=[iid])
    ec2.stop_instances(InstanceIds=[iid])
    assert state(ec2, iid) == "stopped"


def test_a_terminated_instance_takes_no_address(ec2):
    iid = run(ec2)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as exc:
        ec2.associate_address(AllocationId=alloc, InstanceId=iid, AllowReassociation=True)
    assert error_code(exc) == "InvalidInstanceID"
    assert not ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0].get("InstanceId")


def test_tagging_an_unknown_instance_is_not_found(ec2):
    with pytest.raises(ClientError) as exc:
        ec2.create_tags(Resources=["i-0000000000000dead"], Tags=[{"Key": "Name", "Value": "x"}])
    assert error_code(exc) == "InvalidInstanceID.NotFound"
    iid = run(ec2)
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "Name", "Value": "x"}])
    tags = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["Tags"]
    assert {"Key": "Name", "Value": "x"} in tags


def test_describe_volumes_shows_the_root_volumes_delete_on_termination(ec2):
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    root = next(m for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"])
    assert root["Ebs"]["DeleteOnTermination"] is True
    att = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]["Attachments"][0]
    assert (att["InstanceId"], att["DeleteOnTermination"]) == (inst["InstanceId"], True)
    data = ec2.create_volume(AvailabilityZone=inst["Placement"]["AvailabilityZone"], Size=8)["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=inst["InstanceId"], Device="/dev/sdf")
    assert ec2.describe_volumes(VolumeIds=[data])["Volumes"][0]["Attachments"][0]["DeleteOnTermination"] is False


def test_a_creating_volume_is_not_snapshotted(emulator, ec2):
    emulator.ok("POST", "config", {"volume_create_seconds": 30.0})
    vid = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    with pytest.raises(ClientError) as exc:
        ec2.create_snapshot(VolumeId=vid)
    assert error_code(exc) == "IncorrectState"
    assert not [s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] if s.get("VolumeId") == vid]

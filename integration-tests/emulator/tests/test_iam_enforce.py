"""IAM enforcement against ferry's shipped policy: the calls ferry makes, with the tags they carry, are
allowed; what the trust boundary must keep out is refused the way AWS refuses it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Emulator, error_code
from helpers import make_group

REPO = Path(__file__).resolve().parents[3]
POLICY = REPO / "deploy/iam/ferry-policy.json"
TEMPLATE = REPO / "deploy/cloudformation/ferry.yaml"
# The exact tag set a launch writes when it claims a detached ledger volume in its own AZ.
CLAIM_TAGS = {
    "ferry:group": "db",
    "ferry:slot": "0",
    "ferry:hook": "launch-token",
    "ferry:volume": "data",
    "ferry:generation": "3",
    "Name": "ferry db/0 data gen 3",
}


def as_ferryd(emulator: Emulator, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="ferryd",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def enforce(emulator: Emulator) -> Iterator[Any]:
    def configure(**body: Any) -> dict[str, Any]:
        body.setdefault("principals", ["ferryd"])
        return emulator.ok("POST", "iam", body)

    yield configure
    emulator.ok("DELETE", "iam")


def ledger_volume(ec2: Any, group: str = "db") -> str:
    tags = [{"Key": "ferry:group", "Value": group}, {"Key": "ferry:volume", "Value": "data"}]
    return ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=10,
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
    )["VolumeId"]


def claim(ec2: Any, volume_id: str, tags: dict[str, str] = CLAIM_TAGS) -> None:
    ec2.create_tags(Resources=[volume_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def last_authz(emulator: Emulator, action: str) -> list[dict[str, Any]]:
    calls = emulator.ok("GET", "calls", action=action, access_key="ferryd")["calls"]
    return calls[-1]["authz"]


def test_the_claim_tag_set_is_allowed_and_was_denied_before_name_joined_the_retag_statement(
    emulator: Emulator, ec2: Any, enforce: Any
) -> None:
    vol, untouched = ledger_volume(ec2), ledger_volume(ec2)
    enforce(policy_files=[str(POLICY), str(TEMPLATE)])
    claim(as_ferryd(emulator, "ec2"), vol)
    records = last_authz(emulator, "CreateTags")
    assert {r["source"] for r in records} == {"ferry-policy.json", "ferry.yaml"}
    assert all(r["allowed"] and r["statements"] == ["RetagLedgerVolumesAndSnapshots"] for r in records)
    assert records[0]["context"]["aws:TagKeys"] == sorted(CLAIM_TAGS)

    # The policy as shipped before the fix: the retag statement's tag keys without Name.
    before = json.loads(POLICY.read_text())
    retag = next(s for s in before["Statement"] if s["Sid"] == "RetagLedgerVolumesAndSnapshots")
    retag["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"].remove("Name")
    enforce(policies={"before-the-fix": before})
    with pytest.raises(ClientError) as exc:
        claim(as_ferryd(emulator, "ec2"), untouched)
    assert error_code(exc) == "UnauthorizedOperation"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert f"ec2:CreateTags on resource: arn:aws:ec2:us-east-1:123456789012:volume/{untouched}" in str(exc.value)
    tags = {t["Key"] for t in ec2.describe_volumes(VolumeIds=[untouched])["Volumes"][0].get("Tags", [])}
    assert "Name" not in tags  # a denied call changes nothing


def test_instance_statements_trust_auto_scaling_not_a_tag_anyone_can_write(
    emulator: Emulator, ec2: Any, asg: Any, enforce: Any
) -> None:
    make_group(asg, desired=1, azs=["us-east-1a"])
    member = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    outsider = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "ferry:managed", "Value": "true"}]}],
    )["Instances"][0]["InstanceId"]
    enforce(policy_files=[str(POLICY), str(TEMPLATE)])
    ferryd = as_ferryd(emulator, "ec2")
    for action in ("stop_instances",):
        with pytest.raises(ClientError) as exc:
            getattr(ferryd, action)(InstanceIds=[outsider])
        assert error_code(exc) == "UnauthorizedOperation"
        getattr(ferryd, action)(InstanceIds=[member])
    assert ec2.describe_instances(InstanceIds=[outsider])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    with pytest.raises(ClientError) as exc:
        ferryd.create_tags(Resources=[outsider], Tags=[{"Key": "ferry:slot", "Value": "0"}])
    assert error_code(exc) == "UnauthorizedOperation"
    ferryd.create_tags(Resources=[member], Tags=[{"Key": "ferry:slot", "Value": "0"}])
    assert last_authz(emulator, "CreateTags")[0]["statements"] == ["TagGroupInstance"]


def test_the_template_pins_the_group_on_the_resource_and_in_the_request(
    emulator: Emulator, ec2: Any, enforce: Any
) -> None:
    mine, theirs = ledger_volume(ec2, "db"), ledger_volume(ec2, "other")
    enforce(policy_files=[str(TEMPLATE)], bindings={"WorkloadGroupName": "db"})
    ferryd = as_ferryd(emulator, "ec2")
    claim(ferryd, mine)
    with pytest.raises(ClientError) as exc:
        claim(ferryd, theirs, {**CLAIM_TAGS, "ferry:group": "other"})
    assert error_code(exc) == "UnauthorizedOperation"
    with pytest.raises(ClientError) as exc:  # moving this group's volume into another group
        claim(ferryd, mine, {**CLAIM_TAGS, "ferry:group": "other"})
    assert error_code(exc) == "UnauthorizedOperation"
    for vol in (theirs,):
        with pytest.raises(ClientError) as exc:
            ferryd.delete_volume(VolumeId=vol)
        assert error_code(exc) == "UnauthorizedOperation"
    # The standalone JSON allows any group: its README says how to pin it.
    enforce(policy_files=[str(POLICY)])
    claim(ferryd, theirs, {**CLAIM_TAGS, "ferry:group": "other"})


def test_tags_at_creation_are_authorized_as_create_tags_of_the_creating_call(
    emulator: Emulator, ec2: Any, enforce: Any
) -> None:
    enforce(policy_files=[str(POLICY)])
    ferryd = as_ferryd(emulator, "ec2")
    spec = [{"ResourceType": "volume", "Tags": [{"Key": "ferry:group", "Value": "db"}, {"Key": "Name", "Value": "x"}]}]
    ferryd.create_volume(AvailabilityZone="us-east-1a", Size=10, TagSpecifications=spec)
    records = last_authz(emulator, "CreateVolume")
    assert [(r["action"], r["statements"]) for r in records] == [
        ("ec2:CreateVolume", ["CreateLedgerVolume"]),
        ("ec2:CreateTags", ["TagOnCreate"]),
    ]
    assert records[1]["context"]["ec2:CreateAction"] == "CreateVolume"
    wrong = copy.deepcopy(spec)
    wrong[0]["Tags"].append({"Key": "owner", "Value": "me"})
    with pytest.raises(ClientError) as exc:
        ferryd.create_volume(AvailabilityZone="us-east-1a", Size=10, TagSpecifications=wrong)
    assert error_code(exc) == "UnauthorizedOperation"
    with pytest.raises(ClientError) as exc:  # untagged: not a ledger volume
        ferryd.create_volume(AvailabilityZone="us-east-1a", Size=10)
    assert error_code(exc) == "UnauthorizedOperation"


def test_only_the_configured_principals_are_enforced_and_unlisted_actions_are_denied(
    emulator: Emulator, ec2: Any, enforce: Any
) -> None:
    iid = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    enforce(policy_files=[str(POLICY)])
    with pytest.raises(ClientError) as exc:
        as_ferryd(emulator, "ec2").terminate_instances(InstanceIds=[iid])
    assert error_code(exc) == "UnauthorizedOperation"
    sqs = as_ferryd(emulator, "sqs")
    url = emulator.client("sqs").create_queue(QueueName="ferry-hooks")["QueueUrl"]
    with pytest.raises(ClientError) as exc:
        sqs.send_message(QueueUrl=url, MessageBody="{}")
    assert error_code(exc) in ("AccessDenied", "AccessDeniedException")
    sqs.receive_message(QueueUrl=url)
    assert last_authz(emulator, "ReceiveMessage")[0]["statements"] == ["ConsumeHookQueue"]
    ec2.terminate_instances(InstanceIds=[iid])  # the test's own key is not governed
    assert emulator.ok("GET", "iam") == {
        "enabled": True,
        "sources": [str(POLICY)],
        "principals": ["ferryd"],
        "roles": {},
    }


RETENTION = REPO / "deploy/iam/ferry-retention-policy.json"
RETENTION_ROLE = "arn:aws:iam::123456789012:role/ferry-retention"


def test_only_the_retention_role_deletes_and_only_ferryd_may_assume_it(
    emulator: Emulator, ec2: Any, enforce: Any
) -> None:
    vol = ledger_volume(ec2)
    snaps = [ec2.create_snapshot(VolumeId=vol, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [{"Key": "ferry:group", "Value": "db"}]}
    ])["SnapshotId"] for _ in range(2)]
    enforce(
        policy_files=[str(POLICY), str(TEMPLATE)],
        roles={"ferry-retention": [str(RETENTION), f"{TEMPLATE}#FerryRetentionRole/retention"]},
    )
    ferryd = as_ferryd(emulator, "ec2")
    with pytest.raises(ClientError) as exc:  # the daemon's own role deletes nothing
        ferryd.delete_snapshot(SnapshotId=snaps[0])
    assert error_code(exc) == "UnauthorizedOperation"

    sts = as_ferryd(emulator, "sts")
    with pytest.raises(ClientError) as exc:
        sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/admin", RoleSessionName="probe")
    assert error_code(exc) == "AccessDenied"
    creds = sts.assume_role(RoleArn=RETENTION_ROLE, RoleSessionName="ferry-retention")["Credentials"]
    retention = boto3.client(
        "ec2",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    retention.delete_snapshot(SnapshotId=snaps[0])
    record = emulator.ok("GET", "calls", action="DeleteSnapshot", access_key=creds["AccessKeyId"])["calls"][-1]
    assert {r["source"] for r in record["authz"]} == {
        "ferry-retention-policy.json",
        "ferry.yaml#FerryRetentionRole/retention",
    }
    assert all(r["statements"] == ["DeleteOldLedgerSnapshots"] for r in record["authz"])
    with pytest.raises(ClientError) as exc:  # and that role does nothing else
        retention.create_tags(Resources=[snaps[1]], Tags=[{"Key": "ferry:generation", "Value": "1"}])
    assert error_code(exc) == "UnauthorizedOperation"
    untagged = ec2.create_snapshot(VolumeId=ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"])
    with pytest.raises(ClientError) as exc:  # nor deletes what is not ferry's
        retention.delete_snapshot(SnapshotId=untagged["SnapshotId"])
    assert error_code(exc) == "UnauthorizedOperation"
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert snaps[0] not in remaining and snaps[1] in remaining

"""What AWS authorizes for one API call: the IAM actions, the resource ARNs and the request context of
each, built from the call's parameters and moto's state *before* the call runs.

The model follows the Service Authorization Reference (EC2, Auto Scaling, SQS, DynamoDB):

* every resource a call touches is authorized on its own: ``AttachVolume`` on the instance *and* on the
  volume, ``CreateSnapshots`` on the instance, each volume in the set and the new snapshots;
* ``aws:ResourceTag/<k>`` (and ``autoscaling:ResourceTag/<k>``) is the resource's tags before the call;
  a resource the call creates has none;
* ``aws:RequestTag/<k>`` and ``aws:TagKeys`` are the request's tags and hold for every resource of it;
* a resource-specific id key (``ec2:InstanceID``, ``ec2:VolumeID``, ``ec2:AllocationId``) is present
  only while that resource is evaluated, which is how a statement narrows itself to one resource type;
* tags given at creation (``TagSpecification``) are also authorized as ``ec2:CreateTags`` on the new
  resource, with ``ec2:CreateAction`` naming the creating call;
* ``Describe*`` calls and ``DryRun`` probes are authorized like the real call (DryRun answers
  ``DryRunOperation`` only when the call would be allowed).

Unknown actions map to ``<service>:<Action>`` on ``*``, so a call the policy does not list is denied.
"""

from __future__ import annotations

import re
from typing import Any

from .iam_policy import Request

ACCOUNT = "123456789012"

# API operations whose IAM action has another name.
_ACTION_ALIASES = {
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}


def _indexed(params: dict[str, Any], stem: str) -> list[str]:
    """Values of ``Stem.1``, ``Stem.2``, … in index order."""
    found = []
    for k, v in params.items():
        m = re.fullmatch(re.escape(stem) + r"\.(\d+)", k)
        if m:
            found.append((int(m.group(1)), str(v)))
    return [v for _, v in sorted(found)]


def request_tags(params: dict[str, Any]) -> dict[str, str]:
    """The tags a call sets: ``Tag.N`` (CreateTags) and every ``TagSpecification.N.Tag.M``."""
    tags: dict[str, str] = {}
    for k, v in params.items():
        m = re.fullmatch(r"((?:TagSpecification\.\d+\.)?Tag\.\d+)\.Key", k)
        if m:
            tags[str(v)] = str(params.get(f"{m.group(1)}.Value", ""))
    return tags


def _tag_context(prefix: str, tags: dict[str, str]) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in tags.items()}


class _Ec2:
    def __init__(self, region: str) -> None:
        from moto.ec2.models import ec2_backends

        self.region = region
        self.backend = ec2_backends[ACCOUNT][region]

    def arn(self, kind: str, rid: str) -> str:
        account = "" if kind == "snapshot" else ACCOUNT
        return f"arn:aws:ec2:{self.region}:{account}:{kind}/{rid}"

    def tags(self, rid: str) -> dict[str, str]:
        return dict(self.backend.tags.get(rid, {}))

    def existing(self, kind: str, rid: str, id_key: str | None = None) -> tuple[str, dict[str, Any]]:
        ctx: dict[str, Any] = _tag_context("aws:ResourceTag", self.tags(rid))
        if id_key:
            ctx[id_key] = rid
        return self.arn(kind, rid), ctx

    def instance_volumes(self, instance_id: str, params: dict[str, Any]) -> list[str]:
        try:
            instance = self.backend.get_instance(instance_id)
        except Exception:
            return []
        spec = "InstanceSpecification."
        exclude_boot = str(params.get(spec + "ExcludeBootVolume", "false")).lower() == "true"
        excluded = set(_indexed(params, spec + "ExcludeDataVolumeId"))
        root = getattr(instance, "root_device_name", None)
        vols = []
        for device, mapping in getattr(instance, "block_device_mapping", {}).items():
            vid = mapping.volume_id
            if vid in excluded or (exclude_boot and device == root):
                continue
            vols.append(vid)
        return vols

    def address(self, params: dict[str, Any]) -> str | None:
        try:
            if params.get("AllocationId"):
                return str(params["AllocationId"])
            if params.get("AssociationId"):
                found = self.backend.address_by_association([params["AssociationId"]])
                return found[0].allocation_id if found else None
            if params.get("PublicIp"):
                found = self.backend.address_by_ip([params["PublicIp"]])
                return found[0].allocation_id if found else None
        except Exception:
            return None
        return None


def _ec2_resources(action: str, params: dict[str, Any], ec2: _Ec2) -> list[tuple[str, dict[str, Any]]]:
    """The (ARN, resource-specific context) pairs ``action`` is authorized on."""
    new = lambda kind: (ec2.arn(kind, "*"), {})  # noqa: E731 - a resource this call creates
    if action == "CreateVolume":
        out = [new("volume")]
        if params.get("SnapshotId"):
            out.append(ec2.existing("snapshot", str(params["SnapshotId"])))
        return out
    if action == "CreateSnapshot":
        return [ec2.existing("volume", str(params.get("VolumeId", "")), "ec2:VolumeID"), new("snapshot")]
    if action == "CreateSnapshots":
        iid = str(params.get("InstanceSpecification.InstanceId", ""))
        out = [ec2.existing("instance", iid, "ec2:InstanceID")]
        out += [ec2.existing("volume", v, "ec2:VolumeID") for v in ec2.instance_volumes(iid, params)]
        return out + [new("snapshot")]
    if action in ("AttachVolume", "DetachVolume"):
        vid = str(params.get("VolumeId", ""))
        iid = str(params.get("InstanceId", ""))
        if not iid and action == "DetachVolume":
            try:
                iid = ec2.backend.get_volume(vid).attachment.instance.id
            except Exception:
                iid = ""
        out = [ec2.existing("volume", vid, "ec2:VolumeID")]
        return out + ([ec2.existing("instance", iid, "ec2:InstanceID")] if iid else [])
    if action in ("StopInstances", "StartInstances", "TerminateInstances", "RebootInstances"):
        return [ec2.existing("instance", i, "ec2:InstanceID") for i in _indexed(params, "InstanceId")]
    if action in ("AssociateAddress", "DisassociateAddress"):
        out = []
        alloc = ec2.address(params)
        if alloc:
            out.append(ec2.existing("elastic-ip", alloc, "ec2:AllocationId"))
        if params.get("InstanceId"):
            out.append(ec2.existing("instance", str(params["InstanceId"]), "ec2:InstanceID"))
        if params.get("NetworkInterfaceId"):
            out.append(ec2.existing("network-interface", str(params["NetworkInterfaceId"])))
        return out
    if action == "CreateTags":
        return [ec2.existing(_kind_of(r), r) for r in _indexed(params, "ResourceId")]
    if action == "DeleteSnapshot":
        return [ec2.existing("snapshot", str(params.get("SnapshotId", "")))]
    if action == "DeleteVolume":
        return [ec2.existing("volume", str(params.get("VolumeId", "")), "ec2:VolumeID")]
    return [("*", {})]


def _kind_of(resource_id: str) -> str:
    for prefix, kind in (
        ("i-", "instance"),
        ("vol-", "volume"),
        ("snap-", "snapshot"),
        ("eipalloc-", "elastic-ip"),
        ("eni-", "network-interface"),
    ):
        if resource_id.startswith(prefix):
            return kind
    return "unknown"


def _ec2_requests(action: str, region: str, params: dict[str, Any]) -> list[Request]:
    ec2 = _Ec2(region)
    tags = request_tags(params)
    shared: dict[str, Any] = _tag_context("aws:RequestTag", tags)
    if tags:
        shared["aws:TagKeys"] = sorted(tags)
    resources = _ec2_resources(action, params, ec2)
    out = [Request(f"ec2:{action}", arn, {**shared, **ctx}) for arn, ctx in resources]
    if action != "CreateTags" and any(k.startswith("TagSpecification.") for k in params):
        for arn, ctx in resources:
            if not ctx:  # the resources this call creates carry the tag specifications
                out.append(Request("ec2:CreateTags", arn, {**shared, "ec2:CreateAction": action}))
    return out


def _autoscaling_requests(action: str, region: str, params: dict[str, Any]) -> list[Request]:
    name = str(params.get("AutoScalingGroupName", ""))
    if not action.startswith("Describe") and name:
        from moto.autoscaling.models import autoscaling_backends

        group = autoscaling_backends[ACCOUNT][region].autoscaling_groups.get(name)
        tags = {t["Key"]: t["Value"] for t in group.tags} if group else {}
        ctx = {**_tag_context("autoscaling:ResourceTag", tags), **_tag_context("aws:ResourceTag", tags)}
        arn = f"arn:aws:autoscaling:{region}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{name}"
        return [Request(f"autoscaling:{action}", arn, ctx)]
    return [Request(f"autoscaling:{action}", "*", {})]


def _queue_arn(region: str, params: dict[str, Any]) -> str:
    url = str(params.get("QueueUrl", ""))
    name = url.rstrip("/").rsplit("/", 1)[-1] if url else str(params.get("QueueName", "*"))
    return f"arn:aws:sqs:{region}:{ACCOUNT}:{name}"


def requests_for(service: str, action: str, region: str, params: dict[str, Any]) -> list[Request]:
    """Every authorization request AWS would make for this call."""
    iam_action = _ACTION_ALIASES.get(f"{service}:{action}", f"{service}:{action}")
    if service == "ec2":
        return _ec2_requests(action, region, params)
    if service == "autoscaling":
        return _autoscaling_requests(action, region, params)
    if service == "sqs":
        return [Request(iam_action, _queue_arn(region, params), {})]
    if service == "sts" and action == "AssumeRole":
        return [Request("sts:AssumeRole", str(params.get("RoleArn", "")), {})]
    if service == "dynamodb":
        table = str(params.get("TableName", "*"))
        return [Request(iam_action, f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}", {})]
    return [Request(iam_action, "*", {})]

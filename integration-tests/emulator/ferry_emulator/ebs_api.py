"""EC2 EBS API handlers replacing moto's, with AWS's strict rules and timed states.

* ``CreateVolume``: unknown AZ -> ``InvalidParameterValue``; snapshot not
  ``completed`` -> ``IncorrectState``; a size below the snapshot's ->
  ``InvalidParameterValue``; ``ClientToken`` idempotency (same params ->
  same volume, other params -> ``IdempotentParameterMismatch``); ``creating``
  for ``volume_create_seconds``.
* ``AttachVolume``: terminated instance -> ``IncorrectInstanceState``; volume not
  available -> ``IncorrectState``; attached -> ``VolumeInUse``; other AZ ->
  ``InvalidVolume.ZoneMismatch``; device taken -> ``InvalidParameterValue``;
  ``attaching`` for ``attach_seconds``.
* ``DetachVolume``: ``InstanceId`` optional (an unknown one -> ``InvalidInstanceID.NotFound``; a volume not
  attached to it -> ``InvalidAttachment.NotFound``; without it, an unattached volume ->
  ``IncorrectState``); ``detaching`` for ``detach_seconds``
  (held while the volume's AZ has an outage: it completes after the outage
  ends, once its detach time ran; see ebs_models.py).
* ``CreateSnapshot`` / ``CreateSnapshots`` (with ``TagSpecifications`` and
  ``CopyTagsFromSource=volume``; a volume still ``creating`` -> ``IncorrectState``): ``pending`` for ``snapshot_seconds``
  (``incremental_snapshot_seconds`` for incremental ones); accepted during an
  outage of the volume's AZ too, then held ``pending`` or ``error`` (the
  response still says ``pending``). The content is captured when the call is
  made (data.py); CreateSnapshots runs under the global lock, so its whole set
  is captured at one instant.
"""

from __future__ import annotations

import json
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidVolumeAttachmentError
from moto.ec2.models.elastic_block_store import Volume
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from . import ebs_models, state

# (account, region, client token) -> (request fingerprint, volume id)
CLIENT_TOKENS: dict[tuple[str, str, str], tuple[str, str]] = {}


@state.on_reset
def _reset() -> None:
    CLIENT_TOKENS.clear()


def _err(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


def _fingerprint(self: ElasticBlockStore) -> str:
    params = {k: v for k, v in self.querystring.items() if k not in ("ClientToken", "Action", "Version")}
    return json.dumps(params, sort_keys=True)


def _create_volume(self: ElasticBlockStore) -> ActionResult:
    backend = self.ec2_backend
    token = self._get_param("ClientToken")
    key = (self.current_account, self.region, token or "")
    if token:
        if len(token) > 64:
            raise _err("InvalidParameterValue", f"Value ({token}) for parameter clientToken is invalid. Length exceeds 64")
        seen = CLIENT_TOKENS.get(key)
        if seen is not None:
            if seen[0] != _fingerprint(self):
                raise _err(
                    "IdempotentParameterMismatch",
                    "The client token you have provided is associated with a resource that is already "
                    "deleted or with different parameters. Please use a different client token.",
                )
            existing = backend.volumes.get(seen[1])
            if existing is not None:
                self.error_on_dryrun()
                return ActionResult(existing)
    zone = self._get_param("AvailabilityZone")
    if not zone:
        raise _err("MissingParameter", "The request must contain the parameter AvailabilityZone")
    if backend.get_zone_by_name(zone) is None:
        raise _err("InvalidParameterValue", f"Invalid availability zone: [{zone}]")
    snapshot_id = self._get_param("SnapshotId")
    if snapshot_id:
        snapshot = backend.get_snapshot(snapshot_id)
        if snapshot.status != "completed":
            raise _err("IncorrectState", f"Snapshot is in invalid state - {snapshot.status}")
        size = self._get_param("Size")
        if size is not None and int(size) < snapshot.volume_size:
            raise _err(
                "InvalidParameterValue",
                f"Volume of {size}GiB is smaller than snapshot '{snapshot_id}', expect size >= {snapshot.volume_size}GiB",
            )
    self.error_on_dryrun()
    volume = backend.create_volume(
        size=self._get_param("Size"),
        zone_name=zone,
        snapshot_id=snapshot_id,
        encrypted=self._get_bool_param("Encrypted", False),
        kms_key_id=self._get_param("KmsKeyId"),
        volume_type=self._get_param("VolumeType"),
        iops=self._get_param("Iops"),
        throughput=self._get_param("Throughput"),
        multi_attach_enabled=self._get_param("MultiAttachEnabled"),
    )
    volume.add_tags(self._parse_tag_specification().get("volume", {}))
    if state.SETTINGS.volume_create_seconds > 0:
        volume.__dict__["_ferry_ready_at"] = state.now() + state.SETTINGS.volume_create_seconds
    if token:
        CLIENT_TOKENS[key] = (_fingerprint(self), volume.id)
    return ActionResult(volume)


def _attach_volume(self: ElasticBlockStore) -> ActionResult:
    backend = self.ec2_backend
    volume_id = self._get_param("VolumeId")
    instance_id = self._get_param("InstanceId")
    device = self._get_param("Device")
    volume = backend.get_volume(volume_id)
    instance = backend.get_instance(instance_id)
    if instance.state in ("terminated", "shutting-down"):
        raise _err("IncorrectInstanceState", f"Instance '{instance_id}' is not 'running'.")
    if volume.status == "creating":
        raise _err("IncorrectState", f"Volume '{volume_id}' is in the 'creating' state.")
    if volume.attachment is not None:
        raise _err("VolumeInUse", f"{volume_id} is already attached to an instance")
    if volume.availability_zone != instance.placement.zone:
        raise _err(
            "InvalidVolume.ZoneMismatch",
            f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
        )
    if not device:
        raise _err("MissingParameter", "The request must contain the parameter device")
    if device in instance.block_device_mapping or any(
        v.attachment is not None and v.attachment.instance is instance and v.attachment.device == device
        for v in backend.volumes.values()
    ):
        raise _err(
            "InvalidParameterValue",
            f"Invalid value '{device}' for unixDevice. Attachment point {device} is already in use",
        )
    self.error_on_dryrun()
    attachment = backend.attach_volume(volume_id, instance_id, device)
    if state.SETTINGS.attach_seconds > 0:
        attachment.__dict__["_ferry_attached_at"] = state.now() + state.SETTINGS.attach_seconds
    return ActionResult(
        {
            "VolumeId": volume.id,
            "InstanceId": instance.id,
            "Device": attachment.device,
            "State": "attaching",
            "AttachTime": attachment.attach_time,
        }
    )


def _detach_volume(self: ElasticBlockStore) -> ActionResult:
    backend = self.ec2_backend
    volume_id = self._get_param("VolumeId")
    instance_id = self._get_param("InstanceId")
    device = self._get_param("Device")
    volume: Volume = backend.get_volume(volume_id)
    if instance_id:
        # An instance that does not exist answers InvalidInstanceID.NotFound before any attachment check
        # (as moto and EC2 do): backend.get_instance raises it.
        backend.get_instance(instance_id)
    att = volume.attachment
    if att is None:
        if instance_id:
            raise InvalidVolumeAttachmentError(volume_id, instance_id)
        raise _err("IncorrectState", f"Volume '{volume_id}' is in the '{volume.status}' state.")
    if instance_id and att.instance.id != instance_id:
        raise InvalidVolumeAttachmentError(volume_id, instance_id)
    if device and att.device != device:
        raise _err(
            "InvalidAttachment.NotFound",
            f"The volume {volume_id} is not attached to instance {att.instance.id} as device {device}",
        )
    if att.status == "detaching":
        raise _err("IncorrectState", f"Volume '{volume_id}' is in the 'detaching' state.")
    self.error_on_dryrun()
    att.instance.block_device_mapping.pop(att.device, None)
    ebs_models.start_detach(att, volume)
    return ActionResult(
        {
            "VolumeId": volume.id,
            "InstanceId": att.instance.id,
            "Device": att.device,
            "State": "detaching",
            "AttachTime": att.attach_time,
        }
    )


def _create_snapshot(self: ElasticBlockStore) -> ActionResult:
    volume = self.ec2_backend.get_volume(self._get_param("VolumeId"))
    if volume.status == "creating":
        raise _err("IncorrectState", f"Volume '{volume.id}' is in the 'creating' state.")
    self.error_on_dryrun()
    snapshot = self.ec2_backend.create_snapshot(volume.id, self._get_param("Description"))
    snapshot.add_tags(self._parse_tag_specification().get("snapshot", {}))
    ebs_models.start_snapshot_timer(snapshot, volume)
    return ActionResult(ebs_models.accepted_view(snapshot))


def _create_snapshots(self: ElasticBlockStore) -> ActionResult:
    backend = self.ec2_backend
    spec: dict[str, Any] = self._get_param("InstanceSpecification", {}) or {}
    self.error_on_dryrun()  # a dry run answers DryRunOperation before the instance is looked up (as moto)
    instance = backend.get_instance(spec.get("InstanceId"))
    exclude_boot = str(spec.get("ExcludeBootVolume", False)).lower() == "true"
    excluded = set(spec.get("ExcludeDataVolumeIds", []) or [])
    tags = self._parse_tag_specification().get("snapshot", {})
    copy_tags = (self._get_param("CopyTagsFromSource") or "").lower() == "volume"
    description = self._get_param("Description", "")
    volumes = [
        backend.get_volume(bdt.volume_id)
        for device, bdt in instance.get_block_device_mapping
        if not ((exclude_boot and device == instance.root_device_name) or bdt.volume_id in excluded)
    ]
    snapshots = []
    for volume in volumes:  # no write can interleave: this all runs under state.LOCK
        snapshot = backend.create_snapshot(volume.id, description=description)
        if copy_tags:
            snapshot.add_tags({t["key"]: t["value"] for t in volume.get_tags() if not t["key"].startswith("aws:")})
        snapshot.add_tags(tags)
        ebs_models.start_snapshot_timer(snapshot, volume)
        snapshots.append(ebs_models.accepted_view(snapshot))
    return ActionResult({"Snapshots": snapshots})


def install() -> None:
    ElasticBlockStore.create_volume = _create_volume  # type: ignore[method-assign]
    ElasticBlockStore.attach_volume = _attach_volume  # type: ignore[method-assign]
    ElasticBlockStore.detach_volume = _detach_volume  # type: ignore[method-assign]
    ElasticBlockStore.create_snapshot = _create_snapshot  # type: ignore[method-assign]
    ElasticBlockStore.create_snapshots = _create_snapshots  # type: ignore[method-assign]

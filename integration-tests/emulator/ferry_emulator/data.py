"""Data on volumes: a write counter per EBS volume, point-in-time snapshots, the write rule.

Each volume holds ``counter`` (its content; 0 when new and empty) and
``writes`` (how many successful writes it took), stored on the moto Volume as
``_ferry_counter`` / ``_ferry_writes``. Snapshots copy the counter when they are
created (``_ferry_counter``, point in time as EBS) and know whether they are
incremental (``_ferry_incremental``: the volume had a completed snapshot then,
or was restored from a snapshot). A volume created from a snapshot starts with
the snapshot's counter.

A write succeeds only while the volume is ``attached`` (not attaching, detaching,
detached, creating) to an instance that is EC2 ``running`` in an AZ without an
outage. The control endpoints (control.py) call :func:`write_volume` and
:func:`write_instance`; both expect the caller to hold ``state.LOCK``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot, Volume
from moto.ec2.models.instances import Instance

from .faults import FAULTS


class Refused(Exception):
    """A write the current state does not allow (HTTP 409)."""


# -- content ----------------------------------------------------------------------
def counter(obj: Volume | Snapshot) -> int:
    return int(obj.__dict__.get("_ferry_counter", 0))


def writes(volume: Volume) -> int:
    return int(volume.__dict__.get("_ferry_writes", 0))


def is_incremental(backend: Any, volume: Volume) -> bool:
    """True when ``volume`` was restored from a snapshot or already has a completed snapshot."""
    if volume.snapshot_id:
        return True
    return any(
        getattr(s.volume, "id", None) == volume.id and s.status == "completed"
        for s in list(backend.snapshots.values())
    )


_original_create_volume = EBSBackend.create_volume
_original_create_snapshot = EBSBackend.create_snapshot
_original_copy_snapshot = EBSBackend.copy_snapshot


def _create_volume(self: Any, *args: Any, **kwargs: Any) -> Volume:
    volume = _original_create_volume(self, *args, **kwargs)
    volume.__dict__["_ferry_counter"] = 0
    volume.__dict__["_ferry_writes"] = 0
    if volume.snapshot_id:
        snapshot = self.snapshots.get(volume.snapshot_id)
        if snapshot is not None:
            volume.__dict__["_ferry_counter"] = counter(snapshot)
    return volume


def _create_snapshot(self: Any, volume_id: str, *args: Any, **kwargs: Any) -> Snapshot:
    volume = self.get_volume(volume_id)
    incremental = is_incremental(self, volume)
    snapshot = _original_create_snapshot(self, volume_id, *args, **kwargs)
    snapshot.__dict__["_ferry_counter"] = counter(volume)
    snapshot.__dict__["_ferry_incremental"] = incremental
    return snapshot


def _copy_snapshot(self: Any, source_snapshot_id: str, source_region: str, *args: Any, **kwargs: Any) -> Snapshot:
    from moto.ec2.models import ec2_backends

    source = ec2_backends[self.account_id][source_region].get_snapshot(source_snapshot_id)
    snapshot = _original_copy_snapshot(self, source_snapshot_id, source_region, *args, **kwargs)
    snapshot.__dict__["_ferry_counter"] = counter(source)
    snapshot.__dict__["_ferry_incremental"] = False
    return snapshot


# -- lookups (any account, any region) --------------------------------------------
def all_backends() -> Iterator[Any]:
    """Every EC2 backend moto has created (all accounts, all regions)."""
    from moto.ec2.models import ec2_backends

    for regions in list(ec2_backends.values()):
        yield from list(regions.values())


def find_volume(volume_id: str) -> Volume | None:
    for backend in all_backends():
        volume = backend.volumes.get(volume_id)
        if volume is not None:
            return volume
    return None


def find_snapshot(snapshot_id: str) -> Snapshot | None:
    for backend in all_backends():
        snapshot = backend.snapshots.get(snapshot_id)
        if snapshot is not None:
            return snapshot
    return None


def find_instance(instance_id: str) -> Instance | None:
    for backend in all_backends():
        for instance in backend.all_instances():
            if instance.id == instance_id:
                return instance
    return None


# -- the write rule ---------------------------------------------------------------
def _instance_refusal(instance: Instance, what: str) -> str | None:
    if instance.state != "running":
        return f"{what}instance {instance.id} is {instance.state}, not running"
    zone = instance.placement.zone
    if FAULTS.az_down(zone):
        return f"{what}instance {instance.id} is in {zone}, which has an AZ outage"
    return None


def volume_refusal(volume: Volume) -> str | None:
    """Why ``volume`` cannot be written now, or None if it can."""
    status = volume.status
    if status == "creating":
        return f"volume {volume.id} is creating"
    att = volume.attachment
    if att is None:
        return f"volume {volume.id} is {status}, not attached to an instance"
    if att.status != "attached":
        return f"volume {volume.id} is {att.status} (instance {att.instance.id}), not attached"
    return _instance_refusal(att.instance, f"volume {volume.id}: ")


def _apply(volume: Volume, value: int) -> None:
    volume.__dict__["_ferry_counter"] = value
    volume.__dict__["_ferry_writes"] = writes(volume) + 1


def write_volume(volume: Volume, value: int | None) -> dict[str, Any]:
    reason = volume_refusal(volume)
    if reason is not None:
        raise Refused(reason)
    _apply(volume, counter(volume) + 1 if value is None else value)
    return volume_data(volume, short=True)


def data_volumes(instance: Instance) -> list[Volume]:
    """The non-root volumes attached (in any attachment state) to ``instance``, by device."""
    found = []
    for volume in list(instance.ec2_backend.volumes.values()):
        att = volume.attachment
        if att is not None and att.instance is instance and att.device != instance.root_device_name:
            found.append((att.device, volume))
    return [v for _, v in sorted(found, key=lambda p: p[0])]


def write_instance(instance: Instance, value: int | None) -> dict[str, Any]:
    """Write one value to every non-root volume of ``instance``, all or nothing."""
    reason = _instance_refusal(instance, "")
    if reason is not None:
        raise Refused(reason)
    volumes = data_volumes(instance)
    if not volumes:
        raise Refused(f"instance {instance.id} has no attached non-root volume")
    reasons = [r for r in (volume_refusal(v) for v in volumes) if r is not None]
    if reasons:
        raise Refused(f"instance {instance.id}: nothing written: " + "; ".join(reasons))
    if value is None:
        value = max(counter(v) for v in volumes) + 1
    for volume in volumes:
        _apply(volume, value)
    return {"instance_id": instance.id, "counter": value, "volumes": {v.id: value for v in volumes}}


# -- views ------------------------------------------------------------------------
def volume_data(volume: Volume, short: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"volume_id": volume.id, "counter": counter(volume), "writes": writes(volume)}
    if not short:
        data["source_snapshot"] = volume.snapshot_id or None
        data["state"] = volume.status
    return data


def snapshot_data(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.id,
        "volume_id": getattr(snapshot.volume, "id", None),
        "counter": counter(snapshot),
        "incremental": bool(snapshot.__dict__.get("_ferry_incremental", False)),
        "state": snapshot.status,
    }


def install() -> None:
    EBSBackend.create_volume = _create_volume  # type: ignore[method-assign]
    EBSBackend.create_snapshot = _create_snapshot  # type: ignore[method-assign]
    EBSBackend.copy_snapshot = _copy_snapshot  # type: ignore[method-assign]

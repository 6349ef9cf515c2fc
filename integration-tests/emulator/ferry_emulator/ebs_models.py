"""Patches of moto's EC2 models: timed states, AZ-outage effects, status checks.

States are computed lazily from timestamps the API handlers (ebs_api.py) put on
the objects, so every API sees one consistent state at any moment:

* ``Volume.status``: ``creating`` until ``_ferry_ready_at``, then ``in-use`` or ``available``;
* ``VolumeAttachment.status``: ``attaching`` until ``_ferry_attached_at``, ``detaching``
  while a timed detach runs, then ``attached`` / ``detached``;
* ``Volume.attachment``: a timed detach drops the attachment once
  ``_ferry_detach_done_at`` passed (never while the volume's AZ has an outage,
  at once if the instance is terminated);
* ``Snapshot.status`` / ``progress``: ``pending`` with rising progress until
  ``_ferry_done_at``, then ``completed``; a snapshot of a volume in an AZ under
  outage that had not completed when the outage began stays ``pending`` or ends
  in ``error`` (per ``snapshot_mode``).

Terminating an instance also detaches its volumes (deleting DeleteOnTermination
ones) and disassociates its Elastic IPs, as AWS does. With
``instance_shutdown_seconds`` > 0 the instance is first ``shutting-down`` for
that long (volumes still attached, EIPs still associated); the rest of the
termination runs when it is due (:func:`complete_due_shutdowns`, run by the
ticker and before every locked request, so every API sees it on time).

Objects created by moto internally (root volumes of launched instances, AMI
snapshots) carry no timestamps and behave as moto always did: instant.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.ec2.models.elastic_block_store import Snapshot, Volume, VolumeAttachment
from moto.ec2.models.instances import Instance

from . import state
from .faults import FAULTS


# -- volumes --------------------------------------------------------------------
def _volume_attachment_get(self: Volume) -> VolumeAttachment | None:
    att: VolumeAttachment | None = self.__dict__.get("_ferry_attachment")
    if att is None or not att.__dict__.get("_ferry_detaching"):
        return att
    done_at = att.__dict__.get("_ferry_detach_done_at", 0.0)
    instance_gone = getattr(att.instance, "state", "running") == "terminated"
    if instance_gone or (state.now() >= done_at and not FAULTS.az_down(self.availability_zone)):
        att.__dict__["_ferry_detaching"] = False
        att.status = "detached"
        self.__dict__["_ferry_attachment"] = None
        return None
    return att


def _volume_attachment_set(self: Volume, value: VolumeAttachment | None) -> None:
    self.__dict__["_ferry_attachment"] = value


def _volume_status(self: Volume) -> str:
    ready_at = self.__dict__.get("_ferry_ready_at")
    if ready_at is not None and state.now() < ready_at:
        return "creating"
    return "in-use" if self.attachment else "available"


# -- attachments ----------------------------------------------------------------
def _attachment_status_get(self: VolumeAttachment) -> str:
    if self.__dict__.get("_ferry_detaching"):
        return "detaching"
    stored = self.__dict__.get("_ferry_status", "attached")
    attached_at = self.__dict__.get("_ferry_attached_at")
    if stored == "attached" and attached_at is not None and state.now() < attached_at:
        return "attaching"
    return stored


def _attachment_status_set(self: VolumeAttachment, value: str) -> None:
    self.__dict__["_ferry_status"] = value


# -- snapshots ------------------------------------------------------------------
def _snapshot_phase(snap: Snapshot) -> tuple[str, int]:
    """(status, progress percent) of a snapshot at this moment."""
    stored = snap.__dict__.get("_ferry_status", "completed")
    done_at = snap.__dict__.get("_ferry_done_at")
    if done_at is None or stored != "completed":
        return stored, 100 if stored == "completed" else 0
    started = snap.__dict__.get("_ferry_started", done_at)
    now = state.now()
    outage = FAULTS.outage()
    az = snap.__dict__.get("_ferry_az")
    if outage is not None and outage[0] == az and outage[2] < done_at:
        if outage[1] == "error":
            return "error", _progress(started, done_at, outage[2])
        return "pending", _progress(started, done_at, min(now, outage[2]))
    if now >= done_at:
        return "completed", 100
    return "pending", _progress(started, done_at, now)


def _progress(started: float, done_at: float, at: float) -> int:
    if done_at <= started:
        return 100
    return max(0, min(99, int(100 * (at - started) / (done_at - started))))


def _snapshot_status_get(self: Snapshot) -> str:
    return _snapshot_phase(self)[0]


def _snapshot_status_set(self: Snapshot, value: str) -> None:
    self.__dict__["_ferry_status"] = value


def _snapshot_progress(self: Snapshot) -> str:
    return f"{_snapshot_phase(self)[1]}%"


def start_snapshot_timer(snap: Snapshot, volume: Volume) -> None:
    now = state.now()
    seconds = state.SETTINGS.snapshot_seconds
    incremental_seconds = state.SETTINGS.incremental_snapshot_seconds
    if snap.__dict__.get("_ferry_incremental") and incremental_seconds is not None:
        seconds = incremental_seconds
    snap.__dict__["_ferry_started"] = now
    snap.__dict__["_ferry_done_at"] = now + seconds
    snap.__dict__["_ferry_az"] = volume.availability_zone


# -- instances ------------------------------------------------------------------
def _impaired(instance: Instance) -> dict[str, Any] | None:
    outage = FAULTS.outage()
    if outage is None or instance.placement.zone != outage[0] or instance.state_code != 16:
        return None
    return {
        "Details": [{"Name": "reachability", "Status": "failed", "ImpairedSince": state.iso(outage[2])}],
        "Status": "impaired",
    }


_original_instance_status = Instance.instance_status
_original_system_status = Instance.system_status


def _instance_status(self: Instance) -> dict[str, Any]:
    return _impaired(self) or _original_instance_status.fget(self)  # type: ignore[attr-defined]


def _system_status(self: Instance) -> dict[str, Any]:
    return _impaired(self) or _original_system_status.fget(self)  # type: ignore[attr-defined]


def _teardown_defaults(self: Instance) -> None:
    """On termination: detach every volume; delete those with DeleteOnTermination (AWS behaviour)."""
    backend = self.ec2_backend
    for device_path, bdt in list(self.block_device_mapping.items()):
        volume = backend.volumes.get(bdt.volume_id)
        del self.block_device_mapping[device_path]
        if volume is None:
            continue
        att = volume.__dict__.get("_ferry_attachment")
        if att is not None and att.instance is self:
            att.__dict__["_ferry_detaching"] = False
            att.status = "detached"
            volume.attachment = None
        if bdt.delete_on_termination:
            backend.volumes.pop(volume.id, None)
    for volume in list(backend.volumes.values()):  # volumes mid-detach from this instance
        att = volume.__dict__.get("_ferry_attachment")
        if att is not None and att.instance is self:
            volume.attachment = None


_original_terminate = Instance.terminate

# instance id -> (instance, when its shutting-down phase ends)
SHUTTING_DOWN: dict[str, tuple[Instance, float]] = {}


@state.on_reset
def _reset() -> None:
    SHUTTING_DOWN.clear()


def _finish_terminate(self: Instance) -> Any:
    """Terminate, then release the instance's Elastic IPs (AWS disassociates them)."""
    previous = _original_terminate(self)
    for eip in getattr(self.ec2_backend, "addresses", []):
        if eip.instance is self:
            eip.instance = None
            eip.eni = None
            eip.association_id = None
    return previous


def _terminate(self: Instance) -> Any:
    """Terminate now, or enter ``shutting-down`` for ``instance_shutdown_seconds``."""
    if self.id in SHUTTING_DOWN:
        return copy.copy(self._state)  # already on its way
    seconds = state.SETTINGS.instance_shutdown_seconds
    if seconds <= 0 or self.state == "terminated":
        return _finish_terminate(self)
    previous = copy.copy(self._state)
    self._state.name, self._state.code = "shutting-down", 32
    SHUTTING_DOWN[self.id] = (self, state.now() + seconds)
    return previous


@state.on_due
def complete_due_shutdowns() -> None:
    """Finish the termination of every instance whose shutting-down phase is over."""
    now = state.now()
    for instance_id, (instance, due) in list(SHUTTING_DOWN.items()):
        if now >= due:
            del SHUTTING_DOWN[instance_id]
            _finish_terminate(instance)


def install() -> None:
    Instance.terminate = _terminate  # type: ignore[method-assign]
    Volume.attachment = property(_volume_attachment_get, _volume_attachment_set)  # type: ignore[assignment]
    Volume.status = property(_volume_status)  # type: ignore[assignment,method-assign]
    VolumeAttachment.status = property(_attachment_status_get, _attachment_status_set)  # type: ignore[assignment]
    Snapshot.status = property(_snapshot_status_get, _snapshot_status_set)  # type: ignore[assignment]
    Snapshot.progress = property(_snapshot_progress)  # type: ignore[assignment,method-assign]
    Instance.instance_status = property(_instance_status)  # type: ignore[assignment,method-assign]
    Instance.system_status = property(_system_status)  # type: ignore[assignment,method-assign]
    Instance.teardown_defaults = _teardown_defaults  # type: ignore[method-assign]

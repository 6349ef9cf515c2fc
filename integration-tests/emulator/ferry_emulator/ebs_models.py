"""Patches of moto's EC2 models: timed states, AZ-outage effects, status checks.

States are computed lazily from timestamps the API handlers (ebs_api.py) put on
the objects, so every API sees one consistent state at any moment:

* ``Volume.status``: ``creating`` until ``_ferry_ready_at``, then ``in-use`` or ``available``;
* ``VolumeAttachment.status``: ``attaching`` until ``_ferry_attached_at``, ``detaching``
  while a timed detach runs, then ``attached`` / ``detached``; its ``DeleteOnTermination`` is the
  instance's block device mapping's (true for an AMI's root volume, as DescribeInstances says);
* ``Volume.attachment``: a timed detach drops the attachment once
  ``_ferry_detach_done_at`` passed (not while it is held, at once if the
  instance is terminated);
* ``Snapshot.status`` / ``progress``: ``pending`` with rising progress until
  ``_ferry_done_at``, then ``completed`` (``pending`` with frozen progress while
  held, ``error`` once failed).

An instance that is terminated (or shutting down) is not stopped (``StopInstances`` ->
``IncorrectInstanceState``) and takes no Elastic IP (``AssociateAddress`` -> ``InvalidInstanceID``), and
``CreateTags`` of an instance that does not exist is ``InvalidInstanceID.NotFound``, as on AWS (moto
resurrects a terminated instance as ``stopping``, associates, and tags any id).

Terminating an instance also detaches its volumes (deleting DeleteOnTermination
ones) and disassociates its Elastic IPs, as AWS does. With
``instance_shutdown_seconds`` > 0 the instance is first ``shutting-down`` for
that long (volumes still attached, EIPs still associated); the rest of the
termination runs when it is due (:func:`complete_due_shutdowns`, run by the
ticker and before every locked request, so every API sees it on time).

An AZ outage **holds** the AZ's timed operations: snapshots not completed
(mode ``pending``; mode ``error`` fails them instead), detaches and shutdowns
(an instance terminated in the AZ is ``shutting-down`` even with
``instance_shutdown_seconds`` 0). A held operation's timer stops
(``_ferry_held_at``); operations started during the outage are held from their
start. When the outage ends (or moves to another AZ), every held timer resumes
with the time it had left: its deadline moves by how long it was held
(:func:`_outage_changed`, a FAULTS observer, so this happens at that instant).

Objects created by moto internally (root volumes of launched instances, AMI
snapshots) carry no timestamps and behave as moto always did: instant.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import EC2Backend
from moto.ec2.models.elastic_block_store import Snapshot, Volume, VolumeAttachment
from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend
from moto.ec2.models.instances import Instance, InstanceBackend

from . import data, state
from .faults import FAULTS, Outage


# -- held timers (AZ outage) ------------------------------------------------------
def _hold(obj: Any, now: float) -> None:
    """Stop ``obj``'s timer at ``now`` (an already held timer keeps its first stop)."""
    obj.__dict__.setdefault("_ferry_held_at", now)


def _held_at(obj: Any) -> float | None:
    return obj.__dict__.get("_ferry_held_at")


def _unhold(obj: Any, now: float) -> float:
    """Restart ``obj``'s timer; returns how long it was held (0 if it was not)."""
    held_at = obj.__dict__.pop("_ferry_held_at", None)
    return 0.0 if held_at is None else max(0.0, now - held_at)


# -- volumes --------------------------------------------------------------------
def _volume_attachment_get(self: Volume) -> VolumeAttachment | None:
    att: VolumeAttachment | None = self.__dict__.get("_ferry_attachment")
    if att is None or not att.__dict__.get("_ferry_detaching"):
        return att
    done_at = att.__dict__.get("_ferry_detach_done_at", 0.0)
    instance_gone = getattr(att.instance, "state", "running") == "terminated"
    if instance_gone or (_held_at(att) is None and state.now() >= done_at):
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


def start_detach(att: VolumeAttachment, volume: Volume) -> None:
    """Detach now, or ``detaching`` for ``detach_seconds`` (held while the volume's AZ has an outage)."""
    seconds = state.SETTINGS.detach_seconds
    down = FAULTS.az_down(volume.availability_zone)
    if seconds <= 0 and not down:
        att.status = "detached"
        volume.attachment = None
        return
    now = state.now()
    att.__dict__["_ferry_detaching"] = True
    att.__dict__["_ferry_detach_done_at"] = now + seconds
    if down:
        _hold(att, now)


def _release_detach(att: VolumeAttachment, now: float) -> None:
    """The outage ended: a held detach needs the detach time it had left."""
    if _held_at(att) is not None:
        att.__dict__["_ferry_detach_done_at"] = att.__dict__.get("_ferry_detach_done_at", now) + _unhold(att, now)


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


def _attachment_delete_on_termination(self: VolumeAttachment) -> bool:
    """``DeleteOnTermination`` as the instance's block device mapping has it (true for an AMI's root volume):
    moto's DescribeVolumes always said false, while DescribeInstances and the termination said true."""
    bdt = getattr(self.instance, "block_device_mapping", {}).get(self.device)
    return bool(bdt is not None and bdt.volume_id == self.volume.id and bdt.delete_on_termination)


# -- snapshots ------------------------------------------------------------------
def _snapshot_phase(snap: Snapshot) -> tuple[str, int]:
    """(status, progress percent) of a snapshot at this moment."""
    stored = snap.__dict__.get("_ferry_status", "completed")
    done_at = snap.__dict__.get("_ferry_done_at")
    if done_at is None:
        return stored, 100 if stored == "completed" else 0
    started = snap.__dict__.get("_ferry_started", done_at)
    held_at = _held_at(snap)
    if stored != "completed" or held_at is not None:  # failed, or held by an outage
        stopped = started if held_at is None else held_at
        return ("pending" if stored == "completed" else stored), _frozen_progress(started, done_at, stopped)
    now = state.now()
    if now >= done_at:
        return "completed", 100
    return "pending", _progress(started, done_at, now)


def _progress(started: float, done_at: float, at: float) -> int:
    if done_at <= started:
        return 100
    return max(0, min(99, int(100 * (at - started) / (done_at - started))))


def _frozen_progress(started: float, done_at: float, at: float) -> int:
    """Progress of a snapshot that stopped at ``at`` (never 100: it did not complete)."""
    return 0 if done_at <= started else _progress(started, done_at, at)


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
    outage = FAULTS.outage()
    if outage is not None and outage[0] == volume.availability_zone:
        _outage_snapshot(snap, outage[1], now)


def accepted_view(snap: Snapshot) -> Snapshot:
    """What CreateSnapshot(s) answers: ``pending``, as AWS does, even if an outage failed it at once."""
    if snap.__dict__.get("_ferry_status") != "error":
        return snap
    view = copy.copy(snap)
    view.__dict__["_ferry_status"] = "pending"
    return view


def _snapshot_in_flight(snap: Snapshot, now: float) -> bool:
    """True for a timed snapshot that has neither completed nor failed (held ones included)."""
    done_at = snap.__dict__.get("_ferry_done_at")
    if done_at is None or snap.__dict__.get("_ferry_status", "completed") != "completed":
        return False
    return _held_at(snap) is not None or now < done_at


def _outage_snapshot(snap: Snapshot, mode: str, now: float) -> None:
    """An outage of the snapshot's AZ stops it: held ``pending`` (mode ``pending``) or ``error``."""
    _hold(snap, now)
    if mode == "error":
        snap.status = "error"


def _release_snapshot(snap: Snapshot, now: float) -> None:
    """The outage ended: a held (not failed) snapshot needs the pending time it had left."""
    if _held_at(snap) is None or snap.__dict__.get("_ferry_status", "completed") != "completed":
        return
    shift = _unhold(snap, now)
    done_at = snap.__dict__["_ferry_done_at"]
    snap.__dict__["_ferry_started"] = snap.__dict__.get("_ferry_started", done_at) + shift
    snap.__dict__["_ferry_done_at"] = done_at + shift


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


_GONE = ("shutting-down", "terminated")
_original_stop_instances = InstanceBackend.stop_instances
_original_associate_address = ElasticAddressBackend.associate_address
_original_do_resources_exist = EC2Backend.do_resources_exist


def _stop_instances(self: InstanceBackend, instance_ids: list[str]) -> Any:
    """StopInstances: a terminated or shutting-down instance cannot be stopped (none is, then)."""
    for instance in self.get_multi_instances_by_id(instance_ids):
        if instance.state in _GONE:
            raise EC2ClientError(
                "IncorrectInstanceState", f"This instance '{instance.id}' is not in a state from which it can be stopped."
            )
    return _original_stop_instances(self, instance_ids)


def _associate_address(self: ElasticAddressBackend, instance: Any = None, *args: Any, **kwargs: Any) -> Any:
    """AssociateAddress: EC2 answers InvalidInstanceID for an instance that is gone or going."""
    if instance is not None and instance.state in _GONE:
        raise EC2ClientError(
            "InvalidInstanceID", f"The {instance.state} instance '{instance.id}' is not in a valid state for this operation."
        )
    return _original_associate_address(self, instance, *args, **kwargs)


def _do_resources_exist(self: EC2Backend, resource_ids: list[str]) -> bool:
    """CreateTags' check: moto's lets any instance id through; EC2 answers InvalidInstanceID.NotFound."""
    for resource_id in resource_ids:
        if resource_id.startswith("i-"):
            self.get_instance(resource_id)
    return _original_do_resources_exist(self, resource_ids)


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
    """Terminate now, or enter ``shutting-down`` for ``instance_shutdown_seconds`` (held in an outage)."""
    if self.id in SHUTTING_DOWN:
        return copy.copy(self._state)  # already on its way
    if self.state == "terminated":
        return _finish_terminate(self)
    seconds = state.SETTINGS.instance_shutdown_seconds
    down = FAULTS.az_down(self.placement.zone)
    if seconds <= 0 and not down:
        return _finish_terminate(self)
    previous = copy.copy(self._state)
    self._state.name, self._state.code = "shutting-down", 32
    now = state.now()
    SHUTTING_DOWN[self.id] = (self, now + seconds)
    if down:
        _hold(self, now)
    return previous


def _release_shutdown(instance: Instance, now: float) -> None:
    """The outage ended: a held shutdown needs the shutting-down time it had left."""
    if _held_at(instance) is not None:
        _, due = SHUTTING_DOWN[instance.id]
        SHUTTING_DOWN[instance.id] = (instance, due + _unhold(instance, now))


@state.on_due
def complete_due_shutdowns() -> None:
    """Finish the termination of every instance whose shutting-down phase is over (and not held)."""
    now = state.now()
    for instance_id, (instance, due) in list(SHUTTING_DOWN.items()):
        if now >= due and _held_at(instance) is None:
            del SHUTTING_DOWN[instance_id]
            _finish_terminate(instance)


# -- AZ outage: holding and releasing the AZ's timed operations --------------------
@FAULTS.on_outage_change
def _outage_changed(old: Outage | None, new: Outage | None) -> None:
    """Release what an ended (or moved) outage held, then hold what the current one stops."""
    now = state.now()
    if old is not None and (new is None or new[0] != old[0]):
        _release_zone(old[0], now)
    if new is not None:
        _hold_zone(new[0], new[1], now)


def _detaching(volume: Volume) -> VolumeAttachment | None:
    """The volume's attachment if a timed detach of it is still running (a due one completes here)."""
    att = volume.attachment
    return att if att is not None and att.__dict__.get("_ferry_detaching") else None


def _hold_zone(az: str, mode: str, now: float) -> None:
    """Hold (or, mode ``error``, fail) the in-flight snapshots of ``az``; hold its detaches and shutdowns."""
    for backend in data.all_backends():
        for snap in list(backend.snapshots.values()):
            if snap.__dict__.get("_ferry_az") == az and _snapshot_in_flight(snap, now):
                _outage_snapshot(snap, mode, now)
        for volume in list(backend.volumes.values()):
            att = _detaching(volume) if volume.availability_zone == az else None
            if att is not None:
                _hold(att, now)
    for instance, _ in list(SHUTTING_DOWN.values()):
        if instance.placement.zone == az:
            _hold(instance, now)


def _release_zone(az: str, now: float) -> None:
    """Resume every held snapshot, detach and shutdown of ``az`` with the time it had left."""
    for backend in data.all_backends():
        for snap in list(backend.snapshots.values()):
            if snap.__dict__.get("_ferry_az") == az:
                _release_snapshot(snap, now)
        for volume in list(backend.volumes.values()):
            att = volume.__dict__.get("_ferry_attachment")
            if volume.availability_zone == az and att is not None:
                _release_detach(att, now)
    for instance, _ in list(SHUTTING_DOWN.values()):
        if instance.placement.zone == az:
            _release_shutdown(instance, now)


def install() -> None:
    Instance.terminate = _terminate  # type: ignore[method-assign]
    Volume.attachment = property(_volume_attachment_get, _volume_attachment_set)  # type: ignore[assignment]
    Volume.status = property(_volume_status)  # type: ignore[assignment,method-assign]
    VolumeAttachment.status = property(_attachment_status_get, _attachment_status_set)  # type: ignore[assignment]
    VolumeAttachment.delete_on_termination = property(_attachment_delete_on_termination)  # type: ignore[attr-defined]
    Snapshot.status = property(_snapshot_status_get, _snapshot_status_set)  # type: ignore[assignment]
    Snapshot.progress = property(_snapshot_progress)  # type: ignore[assignment,method-assign]
    # CreateSnapshots answers SnapshotInfo, whose State moto reads from ``state`` (absent on Snapshot)
    Snapshot.state = property(_snapshot_status_get)  # type: ignore[attr-defined]
    Instance.instance_status = property(_instance_status)  # type: ignore[assignment,method-assign]
    Instance.system_status = property(_system_status)  # type: ignore[assignment,method-assign]
    Instance.teardown_defaults = _teardown_defaults  # type: ignore[method-assign]
    InstanceBackend.stop_instances = _stop_instances  # type: ignore[method-assign]
    ElasticAddressBackend.associate_address = _associate_address  # type: ignore[method-assign]
    EC2Backend.do_resources_exist = _do_resources_exist  # type: ignore[method-assign]

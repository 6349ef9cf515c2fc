"""Eventual consistency (opt-in): EC2's reads lag its writes by a visibility delay.

AWS documents that the EC2 API is eventually consistent: a resource just created can answer
``InvalidInstanceID.NotFound`` / ``InvalidVolume.NotFound`` / ``InvalidSnapshot.NotFound`` for a short
time, a Describe by filter can leave it out, and a tag just written can be missing from a Describe
(https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html). With a delay of D seconds,
for the EC2 calls of the callers in scope:

* an instance, volume or snapshot created less than D seconds ago does not exist: a call naming it
  answers its ``*.NotFound``, a Describe by filter leaves it out;
* a tag written less than D seconds ago is not there yet (a Describe shows the value it had before, or
  no tag), and so does not match a ``tag:`` filter;
* what the call itself creates or tags is visible in its own response (as in AWS's ``CreateVolume``
  answer).

Auto Scaling and SQS calls, the control endpoints and the extension's own bookkeeping (the lifecycle
ticker, the IAM evaluation of a call's resource tags) see the models as they are. The scope is every
caller, or a list of access key ids: the end-to-end harness delays only ferryd's key, so that what it
measures is ferry, not the harness's own reads. The setting survives ``/_emulator/reset`` (like IAM
enforcement); the record of what was created when does not.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.ec2.exceptions import InvalidInstanceIdError, InvalidSnapshotIdError, InvalidVolumeIdError
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot, Volume
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.models.tags import TagBackend

from . import state

_ABSENT = object()


@dataclass
class Consistency:
    """The mode (``delay_seconds``, ``access_keys``) and the record of recent writes."""

    delay_seconds: float = 0.0
    # None: every caller; else the access key ids whose EC2 calls see the delay.
    access_keys: list[str] | None = None
    born: dict[str, float] = field(default_factory=dict)
    # (resource id, tag key) -> (written at, the value before: a string, or _ABSENT)
    tag_writes: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"delay_seconds": self.delay_seconds, "access_keys": self.access_keys}

    def configure(self, data: dict[str, Any]) -> None:
        """Validate ``data`` fully, then apply it; raises ValueError naming the bad input."""
        unknown = set(data) - {"delay_seconds", "access_keys"}
        if unknown:
            raise ValueError(f"unknown consistency key(s) {sorted(unknown)}; known: access_keys, delay_seconds")
        delay = data.get("delay_seconds", 0.0)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError(f"delay_seconds must be a non-negative number, got {delay!r}")
        keys = data.get("access_keys")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys)):
            raise ValueError(f"access_keys must be a list of access key ids or null, got {keys!r}")
        self.delay_seconds = float(delay)
        self.access_keys = None if keys is None else list(keys)

    def applies_to(self, service: str, access_key: str | None) -> bool:
        if self.delay_seconds <= 0 or service != "ec2":
            return False
        return self.access_keys is None or access_key in self.access_keys

    def prune(self, now: float) -> None:
        """Forget writes older than the delay (they are visible to everyone now)."""
        horizon = now - self.delay_seconds
        if len(self.born) > 256:
            self.born = {k: t for k, t in self.born.items() if t > horizon}
        if len(self.tag_writes) > 1024:
            self.tag_writes = {k: w for k, w in self.tag_writes.items() if w[0] > horizon}


CONSISTENCY = Consistency()


@dataclass
class _View:
    """One delayed call: its time and what it wrote itself (visible to it)."""

    at: float
    own: set[str] = field(default_factory=set)


_VIEW: contextvars.ContextVar[_View | None] = contextvars.ContextVar("ferry_consistency_view", default=None)


@contextlib.contextmanager
def viewing(service: str, access_key: str | None) -> Iterator[None]:
    """Run one AWS call; with the mode on for its caller, its reads lag the writes of others."""
    if not CONSISTENCY.applies_to(service, access_key):
        yield
        return
    token = _VIEW.set(_View(state.now()))
    try:
        yield
    finally:
        _VIEW.reset(token)


def _hidden(resource_id: str) -> bool:
    view = _VIEW.get()
    if view is None or resource_id in view.own:
        return False
    born = CONSISTENCY.born.get(resource_id)
    return born is not None and view.at - born < CONSISTENCY.delay_seconds


def _record_birth(resource: Any) -> None:
    now = state.now()
    CONSISTENCY.born[resource.id] = now
    view = _VIEW.get()
    if view is not None:
        view.own.add(resource.id)
    CONSISTENCY.prune(now)


def _wrap_init(cls: type) -> None:
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _record_birth(self)

    cls.__init__ = __init__  # type: ignore[method-assign]


def _visible_tags(resource_id: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
    view = _VIEW.get()
    if view is None or not CONSISTENCY.tag_writes or resource_id in view.own:
        return tags
    out: list[dict[str, str]] = []
    for tag in tags:
        write = CONSISTENCY.tag_writes.get((resource_id, tag["key"]))
        if write is None or view.at - write[0] >= CONSISTENCY.delay_seconds:
            out.append(tag)
        elif write[1] is not _ABSENT:
            out.append({**tag, "value": write[1]})
    return out


def install() -> None:
    """Patch moto's models (after speed.py, whose ``get_tags`` it wraps)."""
    for cls in (Instance, Volume, Snapshot):
        _wrap_init(cls)

    all_reservations = InstanceBackend.all_reservations

    def _all_reservations(self: Any, filters: Any = None) -> list[Any]:
        reservations = all_reservations(self, filters)
        if _VIEW.get() is None:
            return reservations
        out = []
        for reservation in reservations:
            shown = [i for i in reservation.instances if not _hidden(i.id)]
            if shown:
                reservation.instances = shown
                out.append(reservation)
        return out

    InstanceBackend.all_reservations = _all_reservations  # type: ignore[method-assign]

    def _lookups(get: str, describe: str, not_found: Any, ids_arg: str) -> None:
        original_get = getattr(EBSBackend, get)
        original_describe = getattr(EBSBackend, describe)

        def _get(self: Any, *args: Any, **kwargs: Any) -> Any:
            resource_id = args[0] if args else next(iter(kwargs.values()), "")
            if _hidden(resource_id):
                raise not_found(resource_id)
            return original_get(self, *args, **kwargs)

        def _describe(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
            ids = kwargs.get(ids_arg, args[0] if args else None)
            missing = [i for i in ids or [] if _hidden(i)]
            if missing:
                raise not_found(missing)
            return [r for r in original_describe(self, *args, **kwargs) if not _hidden(r.id)]

        setattr(EBSBackend, get, _get)
        setattr(EBSBackend, describe, _describe)

    _lookups("get_volume", "describe_volumes", InvalidVolumeIdError, "volume_ids")
    _lookups("get_snapshot", "describe_snapshots", lambda _ids: InvalidSnapshotIdError(), "snapshot_ids")

    create_tags = TagBackend.create_tags

    def _create_tags(self: Any, resource_ids: list[str], tags: dict[str, str]) -> bool:
        before = {(r, k): self.tags.get(r, {}).get(k, _ABSENT) for r in resource_ids for k in tags}
        done = create_tags(self, resource_ids, tags)
        now = state.now()
        view = _VIEW.get()
        for key, previous in before.items():
            CONSISTENCY.tag_writes[key] = (now, previous)
            if view is not None:
                view.own.add(key[0])
        CONSISTENCY.prune(now)
        return done

    TagBackend.create_tags = _create_tags  # type: ignore[method-assign]

    get_tags = TaggedEC2Resource.get_tags

    def _get_tags(self: Any) -> list[dict[str, str]]:
        return _visible_tags(getattr(self, "id", ""), get_tags(self))

    TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]

    describe_tags = TagBackend.describe_tags

    def _describe_tags(self: Any, filters: Any = None) -> list[dict[str, str]]:
        found = describe_tags(self, filters)
        if _VIEW.get() is None:
            return found
        by_resource: dict[str, list[dict[str, str]]] = {}
        for tag in found:
            if not _hidden(tag["resource_id"]):
                by_resource.setdefault(tag["resource_id"], []).append(tag)
        return [t for rid, tags in by_resource.items() for t in _visible_tags(rid, tags)]

    TagBackend.describe_tags = _describe_tags  # type: ignore[method-assign]

    @state.on_reset
    def _reset() -> None:
        CONSISTENCY.born.clear()
        CONSISTENCY.tag_writes.clear()

"""Instance refreshes: ``StartInstanceRefresh``, ``DescribeInstanceRefreshes``, ``CancelInstanceRefresh``.

A refresh replaces the group's in-service instances one at a time, advanced by
the lifecycle ticker (``state.on_due``):

* ``Strategy=ReplaceRootVolume`` keeps each instance, its ENIs, IPs and data
  volumes. With a terminate hook the instance waits in
  ``ReplacingRootVolume:Wait``; then EC2 stops it, its root volume is replaced,
  EC2 starts it, and with a launch hook it waits in ``Pending:Wait``. Both
  notifications carry ``"Action": "ReplaceRootVolume"`` with Origin and
  Destination ``AutoScalingGroup``.
* ``Strategy=Rolling`` with ``Preferences.MaxHealthyPercentage`` (by default the
  group's ``InstanceMaintenancePolicy``) above 100
  launches the new instance first (the group runs one over its desired
  capacity) and ends the old one once the new one is ``InService``; otherwise it
  ends the old one first and the group launches its replacement.

Status: ``Pending`` until the first tick, ``InProgress``, then ``Successful``,
``Failed`` (an instance's action was abandoned) or ``Cancelled``.
All functions expect the caller to hold ``state.LOCK``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

from . import lifecycle, state

ACTIVE = ("Pending", "InProgress", "Cancelling")
ROOT = "ReplaceRootVolume"


@dataclass
class Refresh:
    id: str
    group: FakeAutoScalingGroup
    strategy: str
    min_healthy: int
    max_healthy: int
    todo: list[str]
    total: int
    started: float
    status: str = "Pending"
    reason: str = ""
    current: str | None = None
    new_instance: str | None = None
    ended: float | None = None
    root_volumes_replaced: list[str] = field(default_factory=list)

    def to_aws(self) -> dict[str, Any]:
        done = self.total - len(self.todo) - (1 if self.current else 0)
        return {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group.name,
            "Strategy": self.strategy,
            "Status": self.status,
            "StatusReason": self.reason,
            "StartTime": state.iso(self.started),
            "EndTime": state.iso(self.ended),
            "PercentageComplete": 100 if self.status == "Successful" else (100 * done) // max(1, self.total),
            "InstancesToUpdate": len(self.todo) + (1 if self.current else 0),
            "Preferences": {"MinHealthyPercentage": self.min_healthy, "MaxHealthyPercentage": self.max_healthy},
        }


REFRESHES: list[Refresh] = []


@state.on_reset
def _reset() -> None:
    REFRESHES.clear()


def active(group_name: str) -> Refresh | None:
    return next((r for r in REFRESHES if r.group.name == group_name and r.status in ACTIVE), None)


def start(group: FakeAutoScalingGroup, strategy: str, preferences: dict[str, Any]) -> Refresh:
    if strategy not in ("Rolling", ROOT):
        raise ValidationError(f"Invalid Strategy {strategy!r}: must be Rolling or ReplaceRootVolume")
    if active(group.name) is not None:
        raise ValidationError(f"An Instance Refresh is already in progress and blocks the execution of this Instance Refresh for group {group.name}.")
    # Without preferences, the group's instance maintenance policy applies (AWS: then 90 / 100).
    policy = getattr(group, "instance_maintenance_policy", None) or {}
    min_healthy = int(preferences.get("MinHealthyPercentage", policy.get("MinHealthyPercentage", 90)))
    max_healthy = int(preferences.get("MaxHealthyPercentage", policy.get("MaxHealthyPercentage", 100)))
    if not 0 <= min_healthy <= 100 or not 100 <= max_healthy <= 200 or max_healthy - min_healthy > 100:
        raise ValidationError(f"Invalid MinHealthyPercentage {min_healthy} / MaxHealthyPercentage {max_healthy}")
    todo = [s.instance.id for s in group.instance_states if s.lifecycle_state == "InService"]
    refresh = Refresh(str(uuid.uuid4()), group, strategy, min_healthy, max_healthy, todo, len(todo), state.now())
    REFRESHES.append(refresh)
    return refresh


def cancel(group_name: str) -> Refresh:
    refresh = active(group_name)
    if refresh is None:
        raise ValidationError(f"No in progress or pending Instance Refresh found for Auto Scaling group {group_name}")
    refresh.status, refresh.ended = "Cancelled", state.now()
    return refresh


def describe(group_name: str, ids: list[str]) -> list[dict[str, Any]]:
    found = [r for r in REFRESHES if r.group.name == group_name and (not ids or r.id in ids)]
    return [r.to_aws() for r in sorted(found, key=lambda r: r.started, reverse=True)]


def _member(group: FakeAutoScalingGroup, instance_id: str | None) -> InstanceState | None:
    return next((s for s in group.instance_states if s.instance.id == instance_id), None)


def _finish(refresh: Refresh, status: str, reason: str = "") -> None:
    refresh.status, refresh.reason, refresh.ended = status, reason, state.now()
    refresh.current = refresh.new_instance = None


def _begin_root(refresh: Refresh, st: InstanceState) -> None:
    from . import asg

    hooks = asg.hooks_for(refresh.group, lifecycle.TERMINATING)
    st.lifecycle_state = "ReplacingRootVolume:Wait" if hooks else "ReplacingRootVolume"
    if hooks:
        lifecycle.start(refresh.group, st.instance.id, hooks, "AutoScalingGroup", "AutoScalingGroup", ROOT)
    else:
        root_volume_replaced(refresh.group, st, "CONTINUE")


def root_volume_replaced(group: FakeAutoScalingGroup, st: InstanceState, result: str) -> None:
    """The terminate half of a root-volume replacement is decided: reboot onto the new root volume."""
    from . import asg

    refresh = active(group.name)
    if result == "ABANDON":
        st.lifecycle_state = "InService"
        if refresh is not None:
            _finish(refresh, "Failed", f"the terminate hook of {st.instance.id} was abandoned")
        return
    st.instance.stop()  # the data volumes stay attached: nothing of theirs changes
    st.instance.__dict__["_ferry_root_replacements"] = st.instance.__dict__.get("_ferry_root_replacements", 0) + 1
    if refresh is not None:
        refresh.root_volumes_replaced.append(st.instance.id)
    st.instance.start()
    hooks = asg.hooks_for(group, lifecycle.LAUNCHING)
    st.lifecycle_state = "Pending:Wait" if hooks else "InService"
    if hooks:
        lifecycle.start(group, st.instance.id, hooks, "AutoScalingGroup", "AutoScalingGroup", ROOT)


def _advance(refresh: Refresh) -> None:
    from . import asg

    group = refresh.group
    if refresh.status == "Pending":
        refresh.status = "InProgress"
    if refresh.current is not None:
        old = _member(group, refresh.current)
        if refresh.strategy == ROOT:
            if old is not None and old.lifecycle_state != "InService":
                return  # its hooks are still running
            if old is None:
                return _finish(refresh, "Failed", f"{refresh.current} left the group during its root-volume replacement")
        elif refresh.new_instance is not None:  # launch before terminate
            new = _member(group, refresh.new_instance)
            if new is None:
                return _finish(refresh, "Failed", f"the replacement {refresh.new_instance} did not enter service")
            if new.lifecycle_state != "InService":
                return
            if old is not None:
                if not old.lifecycle_state.startswith("Terminating"):
                    asg.begin_terminate(group, old)
                return
        else:  # terminate first: wait for it to go and the group to be whole again
            in_service = [s for s in group.instance_states if s.lifecycle_state == "InService"]
            if old is not None or len(in_service) < asg.target_instances(group):
                return
        refresh.current = refresh.new_instance = None
    while refresh.todo:
        st = _member(group, refresh.todo.pop(0))
        if st is None or st.lifecycle_state != "InService":
            continue
        refresh.current = st.instance.id
        if refresh.strategy == ROOT:
            _begin_root(refresh, st)
        elif refresh.max_healthy > 100:
            asg._launch(group, 1, group.get_propagated_tags(), cold=True)
            refresh.new_instance = group.instance_states[-1].instance.id
        else:
            asg.begin_terminate(group, st)
        return
    _finish(refresh, "Successful")


@state.on_due
def advance_all() -> None:
    for refresh in list(REFRESHES):
        if refresh.status in ("Pending", "InProgress"):
            _advance(refresh)

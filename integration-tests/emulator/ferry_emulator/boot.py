"""Boot time: an instance that joins its group is ``Pending`` for a while before its launch hooks begin.

A cold launch waits ``cold_boot_seconds`` (EC2 launch, OS boot, user data); a warm instance leaving its
pool waits ``warm_start_seconds`` (the start of a stopped, pre-initialized instance). Both default to 0:
the hooks begin at once. The benchmark of a warm pool against a cold launch sets them to model AWS.
All functions expect the caller to hold ``state.LOCK``.
"""

from __future__ import annotations

from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

from . import lifecycle, state

# (due time, group, member, origin, destination)
DUE: list[tuple[float, FakeAutoScalingGroup, InstanceState, str | None, str | None]] = []


@state.on_reset
def _reset() -> None:
    DUE.clear()


def _begin(group: FakeAutoScalingGroup, st: InstanceState, origin: str | None, destination: str | None) -> None:
    from . import asg

    hooks = asg.hooks_for(group, lifecycle.LAUNCHING)
    st.lifecycle_state = "Pending:Wait" if hooks else "InService"
    if hooks:
        lifecycle.start(group, st.instance.id, hooks, origin=origin, destination=destination)
    else:
        asg.sync_load_balancers(group)  # InService: registered with the group's load balancers


def join(group: FakeAutoScalingGroup, st: InstanceState, seconds: float, origin: str | None = None, destination: str | None = None) -> None:
    """``st`` (already a member) boots for ``seconds``, then waits on the launch hooks (or serves)."""
    if seconds <= 0:
        _begin(group, st, origin, destination)
        return
    st.lifecycle_state = "Pending"
    DUE.append((state.now() + seconds, group, st, origin, destination))


@state.on_due
def _run_due() -> None:
    now = state.now()
    ready = [d for d in DUE if d[0] <= now]
    for item in ready:
        DUE.remove(item)
        _, group, st, origin, destination = item
        if any(s is st for s in group.instance_states) and st.lifecycle_state == "Pending":
            _begin(group, st, origin, destination)


def pending() -> list[dict[str, Any]]:
    return [{"instance_id": st.instance.id, "due": state.iso(due)} for due, _, st, _, _ in DUE]

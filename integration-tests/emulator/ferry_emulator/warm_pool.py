"""Warm pools: pre-initialized instances outside the group's capacity, with their own lifecycle.

* ``PutWarmPool`` stores the configuration (moto) and fills the pool. Each warm
  instance launches with the group's launch hooks into ``Warmed:Pending:Wait``
  (Origin ``EC2``, Destination ``WarmPool``); once its actions complete it is
  stopped (``Warmed:Stopped``; ``Warmed:Hibernated`` or ``Warmed:Running`` for
  those pool states). Without a launch hook it goes there at once.
* When the group needs capacity, a warm instance in its final state enters the
  group (preferring the AZ balancing would choose): EC2 starts it and it waits
  in ``Pending:Wait`` with the launch hooks (Origin ``WarmPool``, Destination
  ``AutoScalingGroup``). The pool then refills.
* Scale-in with ``InstanceReusePolicy.ReuseOnScaleIn`` sends the instance back:
  it waits in ``Warmed:Pending:Wait`` with the terminate hooks (Origin
  ``AutoScalingGroup``, Destination ``WarmPool``), then is stopped, not ended.
* ``DeleteWarmPool`` ends the warm instances (``Warmed:Terminating:Wait`` with the
  terminate hooks, Origin ``WarmPool``, Destination ``EC2``; at once with
  ``ForceDelete``), then the configuration.
* ``DescribeWarmPool`` lists the warm instances; ``DescribeAutoScalingInstances``
  includes them. ``DescribeAutoScalingGroups`` does not, as on AWS.

Pool size: max(MinSize, MaxGroupPreparedCapacity (default: the group's max size) - desired capacity).
All functions expect the caller to hold ``state.LOCK``.
"""

from __future__ import annotations

from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

from . import asg, boot, lifecycle, state

FINAL = {"Stopped": "Warmed:Stopped", "Hibernated": "Warmed:Hibernated", "Running": "Warmed:Running"}

# group name -> its warm instances
WARM: dict[str, list[InstanceState]] = {}


@state.on_reset
def _reset() -> None:
    WARM.clear()


def pool(group: FakeAutoScalingGroup) -> Any | None:
    return getattr(group, "warm_pool", None)


def warm(group: FakeAutoScalingGroup) -> list[InstanceState]:
    return WARM.setdefault(group.name, [])


def _deleting(group: FakeAutoScalingGroup) -> bool:
    p = pool(group)
    return p is not None and getattr(p, "status", None) == "PendingDelete"


def target_size(group: FakeAutoScalingGroup) -> int:
    p = pool(group)
    if p is None or _deleting(group):
        return 0
    prepared = p.max_group_prepared_capacity
    prepared = group.max_size if prepared in (None, -1) else int(prepared)
    return max(int(p.min_size or 0), int(prepared or 0) - int(group.desired_capacity or 0))


def reuse_on_scale_in(group: FakeAutoScalingGroup) -> bool:
    p = pool(group)
    policy = (p.instance_reuse_policy or {}) if p is not None else {}
    return bool(policy.get("ReuseOnScaleIn")) and not _deleting(group)


def _settle(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    """Move a warm instance to its pool's final state: stopped (or hibernated), or running."""
    p = pool(group)
    pool_state = (p.pool_state if p is not None else None) or "Stopped"
    st.lifecycle_state = FINAL.get(pool_state, "Warmed:Stopped")
    if pool_state in ("Stopped", "Hibernated") and st.instance.state == "running":
        st.instance.stop()
    elif pool_state == "Running" and st.instance.state == "stopped":
        st.instance.start()


def _end(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    lifecycle.cancel_instance(st.instance.id)
    if st.instance.state not in ("terminated", "shutting-down"):
        group.autoscaling_backend.ec2_backend.terminate_instances([st.instance.id])
    WARM[group.name] = [s for s in warm(group) if s is not st]
    if _deleting(group) and not warm(group):
        group.warm_pool = None


def refill(group: FakeAutoScalingGroup) -> None:
    """Launch warm instances until the pool holds its target size."""
    if getattr(group, "_ferry_deleting", False):
        return
    missing = target_size(group) - len(warm(group))
    for _ in range(max(0, missing)):
        instance = asg.run_instance(group, group.get_propagated_tags())
        hooks = asg.hooks_for(group, lifecycle.LAUNCHING)
        st = InstanceState(instance, lifecycle_state="Warmed:Pending:Wait" if hooks else "Warmed:Pending")
        warm(group).append(st)
        if hooks:
            lifecycle.start(group, instance.id, hooks, origin="EC2", destination="WarmPool")
        else:
            _settle(group, st)


def enter_service(group: FakeAutoScalingGroup) -> bool:
    """Move one ready warm instance into the group (``Pending:Wait`` with the launch hooks); False if none."""
    ready = [s for s in warm(group) if s.lifecycle_state in FINAL.values()]
    if not ready or _deleting(group):
        return False
    az, _ = asg.choose_zone(group)
    st = next((s for s in ready if s.instance.placement.zone == az), ready[0])
    WARM[group.name] = [s for s in warm(group) if s is not st]
    if st.instance.state != "running":
        st.instance.start()
    group.instance_states.append(st)
    boot.join(group, st, state.SETTINGS.warm_start_seconds, origin="WarmPool", destination="AutoScalingGroup")
    return True


def return_to_pool(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    """Scale-in under ``ReuseOnScaleIn``: the instance goes back to the pool instead of ending."""
    lifecycle.cancel_instance(st.instance.id)
    group.instance_states = [s for s in group.instance_states if s is not st]
    warm(group).append(st)
    hooks = asg.hooks_for(group, lifecycle.TERMINATING)
    if hooks:
        st.lifecycle_state = "Warmed:Pending:Wait"
        lifecycle.start(group, st.instance.id, hooks, origin="AutoScalingGroup", destination="WarmPool")
    else:
        _settle(group, st)


def _begin_end(group: FakeAutoScalingGroup, st: InstanceState, force: bool) -> None:
    hooks = [] if force else asg.hooks_for(group, lifecycle.TERMINATING)
    if hooks:
        lifecycle.cancel_instance(st.instance.id)
        st.lifecycle_state = "Warmed:Terminating:Wait"
        lifecycle.start(group, st.instance.id, hooks, origin="WarmPool", destination="EC2")
    else:
        _end(group, st)


def delete(group: FakeAutoScalingGroup, force: bool) -> None:
    """DeleteWarmPool: end every warm instance, then the configuration."""
    p = pool(group)
    if p is None:
        return
    p.status = "PendingDelete"
    for st in list(warm(group)):
        if st.lifecycle_state != "Warmed:Terminating:Wait":
            _begin_end(group, st, force)
    if not warm(group):
        group.warm_pool = None


def drop(group: FakeAutoScalingGroup) -> None:
    """The group is deleted: its warm instances end without hooks."""
    for st in list(warm(group)):
        _end(group, st)
    WARM.pop(group.name, None)


def resolve(action: lifecycle.Action, result: str) -> bool:
    """Moves a warm instance on once its transition is decided; False if the instance is not warm."""
    for group_name, members in WARM.items():
        st = next((s for s in members if s.instance.id == action.instance_id), None)
        if st is None:
            continue
        group = st.instance.autoscaling_group
        if st.lifecycle_state == "Warmed:Terminating:Wait":
            _end(group, st)
        elif st.lifecycle_state == "Warmed:Pending:Wait":
            if action.transition == lifecycle.LAUNCHING and result == "ABANDON":
                _end(group, st)
                refill(group)
            else:
                _settle(group, st)
        return True
    return False


def forget_instances(instance_ids: list[str]) -> None:
    """EC2 ended these instances outside Auto Scaling: they leave their pools, which refill."""
    for members in WARM.values():
        gone = [s for s in members if s.instance.id in instance_ids]
        for st in gone:
            lifecycle.cancel_instance(st.instance.id)
            members.remove(st)
            refill(st.instance.autoscaling_group)


def all_warm() -> list[InstanceState]:
    return [s for members in WARM.values() for s in members]

"""Patches of moto's Auto Scaling models: launches and terminations that honour lifecycle hooks.

* Launches go into the AZ chosen by the placement control or, by default, AWS-style balancing (fewest
  instances, ties in list order), one RunInstances per AZ, with a SubnetId consistent with that AZ. With a
  launch hook the instance waits in ``Pending:Wait``.
* Terminations (TerminateInstanceInAutoScalingGroup, scale-in, SetInstanceHealth Unhealthy) wait in
  ``Terminating:Wait`` when the group has a terminate hook; the EC2 instance stays running until the action
  completes. A member marked Unhealthy stays visible (``Terminating``, ``Terminating:Wait``, then
  ``Terminating:Proceed`` while EC2 shuts it down) until its termination finishes; that termination begins
  as deferred work (state.on_due), after the SetInstanceHealth call.
* Replacements launch after the terminate completes, or at once when the ``replacement_order`` setting is
  ``before_terminate``. They come from the group's warm pool when it has an instance ready (warm_pool.py).
  Scale-in under a warm pool's ``ReuseOnScaleIn`` returns instances to the pool.
* The group's classic ELBs and target groups hold its InService members: an instance is deregistered as it
  leaves InService (terminate, standby, before its terminate hooks), registered once InService.

Capacity counts instances in Pending*, InService (not Terminating*, not Standby) against the desired capacity
in instances (:func:`target_instances`: mixed-instances weights as moto computes them).
"""

from __future__ import annotations

import math
import sys
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    ASG_NAME_TAG,
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    TerminateInstanceActivity,
)

from . import boot, lifecycle, refresh, state, warm_pool

COUNTING_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")  # Pending: boot.py

# group name -> forced AZ for its next launches (sticky until cleared)
PLACEMENT: dict[str, str] = {}
# members marked Unhealthy whose termination begins with the next deferred work
UNHEALTHY: list[tuple[FakeAutoScalingGroup, InstanceState]] = []
_original_delete = AutoScalingBackend.delete_auto_scaling_group
_original_describe_instances = AutoScalingBackend.describe_auto_scaling_instances


@state.on_reset
def _reset() -> None:
    PLACEMENT.clear()
    UNHEALTHY.clear()


def hooks_for(group: FakeAutoScalingGroup, transition: str) -> list[Any]:
    hooks = group.autoscaling_backend.lifecycle_hooks.values()
    return [h for h in hooks if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition]


def _counting(group: FakeAutoScalingGroup) -> list[InstanceState]:
    return [s for s in group.instance_states if s.lifecycle_state in COUNTING_STATES]


def target_instances(group: FakeAutoScalingGroup) -> int:
    """How many instances make the desired capacity: capacity units over the weight of a mixed-instances
    policy's first override (its priority choice), on-demand and spot parts rounded up apart (moto's rule)."""
    desired = group.desired_capacity or 0
    policy = group.mixed_instances_policy or {}
    overrides = policy.get("LaunchTemplate", {}).get("Overrides", []) if isinstance(policy, dict) else []
    if not overrides:
        return desired
    raw = str(overrides[0].get("WeightedCapacity", "1"))
    weight = int(raw) if raw.isdigit() and int(raw) > 0 else 1
    distribution = policy.get("InstancesDistribution", {})
    base = int(distribution.get("OnDemandBaseCapacity", 0))
    percent = int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100))
    if base >= desired:
        on_demand, spot = desired, 0
    else:
        above = desired - base
        on_demand_above = above * percent / 100.0
        on_demand, spot = int(base + on_demand_above), int(above - on_demand_above)
    return math.ceil(on_demand / weight) + math.ceil(spot / weight)


def sync_load_balancers(group: FakeAutoScalingGroup) -> None:
    """Register the group's InService members with its classic ELBs and target groups, deregister the rest."""
    backend = group.autoscaling_backend
    if group.name in backend.autoscaling_groups:
        backend.update_attached_elbs(group.name)
        backend.update_attached_target_groups(group.name)


# -- placement ------------------------------------------------------------------
def _zone_subnets(group: FakeAutoScalingGroup) -> list[tuple[str, str | None]]:
    """(az, subnet) in the group's list order; subnet None when the group has no VPCZoneIdentifier."""
    if group.vpc_zone_identifier:
        ec2 = group.autoscaling_backend.ec2_backend
        pairs: list[tuple[str, str | None]] = []
        for subnet_id in [s.strip() for s in group.vpc_zone_identifier.split(",") if s.strip()]:
            subnet = ec2.get_subnet(subnet_id)
            if all(az != subnet.availability_zone for az, _ in pairs):
                pairs.append((subnet.availability_zone, subnet_id))
        return pairs
    return [(az, None) for az in group.availability_zones]


def choose_zone(group: FakeAutoScalingGroup, planned: list[str] | None = None) -> tuple[str, str | None]:
    """The (AZ, subnet id) of the group's next launch (after the launches ``planned`` in those AZs)."""
    pairs = _zone_subnets(group)
    zones = [az for az, _ in pairs]
    forced = PLACEMENT.get(group.name)
    if forced and forced not in zones:
        print(f"ferry-emulator: placement {forced} is not an AZ of group {group.name} {zones}; balancing",
              file=sys.stderr)
        forced = None
    az = forced
    if not az:
        counts = {z: 0 for z in zones}
        for zone in [st.instance.placement.zone for st in _counting(group)] + list(planned or []):
            if zone in counts:
                counts[zone] += 1
        az = min(zones, key=lambda z: (counts[z], zones.index(z)))
    subnet = dict(pairs)[az]
    if subnet is None:
        default = group.autoscaling_backend.ec2_backend.get_default_subnets().get(az)
        subnet = default.id if default is not None else None
    return az, subnet


# -- launch ---------------------------------------------------------------------
def run_instance(group: FakeAutoScalingGroup, propagated_tags: dict[str, str]) -> Any:
    """Run one EC2 instance of the group in the AZ placement or balancing chooses (not yet a member)."""
    return run_instances(group, propagated_tags, [choose_zone(group)])[0]


def run_instances(group: FakeAutoScalingGroup, propagated_tags: dict[str, str], zones: list[tuple[str, str | None]]) -> list[Any]:
    """Run one EC2 instance of the group per (AZ, subnet) of ``zones``: one RunInstances per AZ (not members yet)."""
    tags = dict(propagated_tags)
    tags[ASG_NAME_TAG] = group.name
    tags.update(group.instance_tags)
    launch_template = None
    if group.ec2_launch_template:
        if group.ec2_launch_template.id:
            launch_template = {"LaunchTemplateId": group.ec2_launch_template.id}
        elif group.ec2_launch_template.name:
            launch_template = {"LaunchTemplateName": group.ec2_launch_template.name}
    associate_public_ip = group.launch_config.associate_public_ip_address if group.launch_config else None
    instances: list[Any] = []
    for az, subnet_id in dict.fromkeys(zones):
        reservation = group.autoscaling_backend.ec2_backend.run_instances(
            group.image_id, zones.count((az, subnet_id)), group.user_data, group.security_groups,
            instance_type=group.instance_type, tags={"instance": dict(tags)}, placement=az,
            launch_config=group.launch_config, launch_template=launch_template, is_instance_type_default=False,
            associate_public_ip=associate_public_ip, subnet_id=subnet_id,
        )
        for instance in reservation.instances:
            instance.autoscaling_group = group
            instances.append(instance)
    return instances


def _launch(group: FakeAutoScalingGroup, count: int, propagated_tags: dict[str, str], cold: bool = False) -> None:
    """Add ``count`` instances to the group: from the warm pool when it has one ready (unless ``cold``),
    else a new launch (one RunInstances per AZ); with a launch hook each waits in ``Pending:Wait``."""
    planned: list[tuple[str, str | None]] = []
    for _ in range(count):
        if not planned and not cold and warm_pool.enter_service(group):
            continue
        planned.append(choose_zone(group, [az for az, _ in planned]))
    if not planned:
        return
    for instance in run_instances(group, propagated_tags, planned):
        st = InstanceState(instance, lifecycle_state="Pending", protected_from_scale_in=group.new_instances_protected_from_scale_in)
        group.instance_states.append(st)
        boot.join(group, st, state.SETTINGS.cold_boot_seconds)


def launch_missing(group: FakeAutoScalingGroup) -> None:
    """Launch instances until the counting instances reach the desired capacity; refill the warm pool."""
    if getattr(group, "_ferry_deleting", False):
        return
    missing = target_instances(group) - len(_counting(group))
    if missing > 0:
        _launch(group, missing, group.get_propagated_tags())
    warm_pool.refill(group)


# -- terminate ------------------------------------------------------------------
def begin_terminate(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    """Send ``st`` into Terminating:Wait (with a terminate hook) or terminate it now."""
    lifecycle.cancel_instance(st.instance.id)  # a pending launch action is moot now
    hooks = hooks_for(group, lifecycle.TERMINATING)
    if hooks and not getattr(group, "_ferry_deleting", False):
        st.lifecycle_state = "Terminating:Wait"
        sync_load_balancers(group)  # AWS deregisters the instance before its terminate hooks
        lifecycle.start(group, st.instance.id, hooks)
        if state.SETTINGS.replacement_order == "before_terminate":
            launch_missing(group)
    else:
        finish_terminate(group, st)


def finish_terminate(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    """Terminate the EC2 instance, drop it from the group (a member marked Unhealthy only once EC2 has
    terminated it: until then ``Terminating:Proceed``), launch a replacement if short."""
    lifecycle.cancel_instance(st.instance.id)
    st.lifecycle_state = "Terminated"
    if st.instance.state not in ("terminated", "shutting-down"):
        group.autoscaling_backend.ec2_backend.terminate_instances([st.instance.id])
    if st.health_status == "Unhealthy" and st.instance.state == "shutting-down":
        st.lifecycle_state = "Terminating:Proceed"
    else:
        group.instance_states = [s for s in group.instance_states if s is not st]
    launch_missing(group)
    sync_load_balancers(group)


def replace_unhealthy(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    """An InService member marked Unhealthy: it leaves service now (``Terminating``, deregistered) and stays
    visible; its termination (terminate hooks, or EC2 at once) begins with the next deferred work."""
    st.lifecycle_state = "Terminating"
    sync_load_balancers(group)
    UNHEALTHY.append((group, st))


@state.on_due
def _run_due() -> None:
    """Begin the termination of members marked Unhealthy; drop those whose EC2 shutdown has finished."""
    for group, st in list(UNHEALTHY):
        if not any(s is st for s in group.instance_states):
            UNHEALTHY.remove((group, st))
        elif st.lifecycle_state == "Terminating":
            begin_terminate(group, st)
        elif st.lifecycle_state == "Terminating:Proceed" and st.instance.state == "terminated":
            group.instance_states = [s for s in group.instance_states if s is not st]
            launch_missing(group)


def _find(backend: AutoScalingBackend, instance_id: str) -> tuple[FakeAutoScalingGroup, InstanceState]:
    for group in backend.autoscaling_groups.values():
        for st in group.instance_states:
            if st.instance.id == instance_id:
                return group, st
    raise ValidationError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")


def resolve(action: lifecycle.Action, result: str) -> None:
    """Called by lifecycle.finish once a transition of an instance is decided."""
    if warm_pool.resolve(action, result):
        return
    backend = asg_models.autoscaling_backends[action.account_id][action.region]
    try:
        group, st = _find(backend, action.instance_id)
    except ValidationError:
        return  # the instance left the group meanwhile
    if action.transition == lifecycle.LAUNCHING and st.lifecycle_state == "Pending:Wait":
        if result == "CONTINUE":
            st.lifecycle_state = "InService"
            sync_load_balancers(group)
        else:
            finish_terminate(group, st)
    elif action.transition == lifecycle.TERMINATING and st.lifecycle_state == "Terminating:Wait":
        finish_terminate(group, st)
    elif action.transition == lifecycle.TERMINATING and st.lifecycle_state == "ReplacingRootVolume:Wait":
        refresh.root_volume_replaced(group, st, result)


# -- patched moto methods -------------------------------------------------------
def _active_instances(self: FakeAutoScalingGroup) -> list[InstanceState]:
    """What moto registers with the group's classic ELBs: the InService members."""
    return [s for s in self.instance_states if s.lifecycle_state == "InService"]


def _update_attached_target_groups(self: AutoScalingBackend, group_name: str) -> None:
    """The group's target groups hold its InService members: register those, deregister the members it
    registered before that are no longer InService (moto only ever registered, every member)."""
    group = self.autoscaling_groups[group_name]
    serving = {s.instance.id for s in _active_instances(group)}
    before: set[str] = getattr(group, "_ferry_targets", set())
    group._ferry_targets = serving  # type: ignore[attr-defined]
    if not group.target_group_arns:
        return
    for target_group in self.elbv2_backend.describe_target_groups(
        target_group_arns=group.target_group_arns, load_balancer_arn=None, names=None
    ):
        if gone := [{"Id": i} for i in sorted(before - serving) if i in target_group.targets]:
            self.elbv2_backend.deregister_targets(target_group.arn, gone)
        if fresh := [{"Id": i, "Port": target_group.port} for i in sorted(serving)]:
            self.elbv2_backend.register_targets(target_group.arn, fresh)


def _replace_instances(self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]) -> None:
    _launch(self, count_needed, propagated_tags)


def _set_desired_capacity(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
    self.desired_capacity = self.min_size if new_capacity is None else new_capacity
    if not _scale_in(self):
        launch_missing(self)
    sync_load_balancers(self)


def _scale_in(group: FakeAutoScalingGroup) -> bool:
    """End (or return to the warm pool) the members above the desired capacity; False if none are."""
    counting = _counting(group)
    excess = len(counting) - target_instances(group)
    if excess <= 0:
        return False
    for st in _scale_in_victims(group, counting, excess):
        if warm_pool.reuse_on_scale_in(group):
            warm_pool.return_to_pool(group, st)
        else:
            begin_terminate(group, st)
    warm_pool.refill(group)
    return True


def _scale_in_victims(group: FakeAutoScalingGroup, counting: list[InstanceState], n: int) -> list[InstanceState]:
    """AWS default policy, simplified: from the AZ with the most instances, oldest first."""
    pool = [s for s in counting if not s.protected_from_scale_in or getattr(group, "_ferry_deleting", False)]
    victims: list[InstanceState] = []
    for _ in range(min(n, len(pool))):
        per_az: dict[str, int] = {}
        for s in pool:
            per_az[s.instance.placement.zone] = per_az.get(s.instance.placement.zone, 0) + 1
        busiest = max(per_az.values())
        candidates = [s for s in pool if per_az[s.instance.placement.zone] == busiest]
        victim = min(candidates, key=lambda s: s.instance.launch_time)
        victims.append(victim)
        pool.remove(victim)
    return victims


def _terminate_instance(self: AutoScalingBackend, instance_id: str, should_decrement: bool) -> TerminateInstanceActivity:
    group, st = _find(self, instance_id)
    original_size = group.desired_capacity
    if st.lifecycle_state.startswith("Terminating"):
        return TerminateInstanceActivity(st.instance, original_size)
    if should_decrement:
        group.desired_capacity = (group.desired_capacity or 0) - 1
    begin_terminate(group, st)
    _scale_in(group)  # a Standby instance did not count: its decrement leaves an excess to end (as AWS)
    return TerminateInstanceActivity(st.instance, original_size)


def _set_instance_health(self: AutoScalingBackend, instance_id: str, health_status: str) -> None:
    group, st = _find(self, instance_id)
    st.health_status = health_status
    if health_status == "Unhealthy" and st.lifecycle_state == "InService":
        replace_unhealthy(group, st)


def _notify_terminate_instances(self: AutoScalingBackend, instance_ids: list[str]) -> None:
    """EC2 TerminateInstances on group members: they leave the group (no hook), replacements launch."""
    for group in list(self.autoscaling_groups.values()):
        gone = [s for s in group.instance_states if s.instance.id in instance_ids]
        if not gone:
            continue
        for st in gone:
            lifecycle.cancel_instance(st.instance.id)
        group.instance_states = [s for s in group.instance_states if s not in gone]
        launch_missing(group)
        sync_load_balancers(group)
    warm_pool.forget_instances(instance_ids)


def _delete_group(self: AutoScalingBackend, group_name: str) -> None:
    group = self.autoscaling_groups.get(group_name)
    if group is not None:
        group._ferry_deleting = True  # type: ignore[attr-defined]
        for st in list(group.instance_states):
            lifecycle.cancel_instance(st.instance.id)
        warm_pool.drop(group)
    _original_delete(self, group_name)
    for key in [k for k, h in self.lifecycle_hooks.items() if h.auto_scaling_group_name == group_name]:
        del self.lifecycle_hooks[key]


def _describe_auto_scaling_instances(self: AutoScalingBackend, instance_ids: list[str]) -> list[InstanceState]:
    """Members and, as on AWS, warm-pool instances."""
    found = _original_describe_instances(self, instance_ids)
    found.extend(s for s in warm_pool.all_warm() if not instance_ids or s.instance.id in instance_ids)
    return found


def install() -> None:
    for name, patch in (("active_instances", _active_instances), ("set_desired_capacity", _set_desired_capacity),
                        ("replace_autoscaling_group_instances", _replace_instances)):
        setattr(FakeAutoScalingGroup, name, patch)
    for name, patch in (
        ("describe_auto_scaling_instances", _describe_auto_scaling_instances), ("terminate_instance", _terminate_instance),
        ("set_instance_health", _set_instance_health), ("update_attached_target_groups", _update_attached_target_groups),
        ("notify_terminate_instances", _notify_terminate_instances), ("delete_auto_scaling_group", _delete_group),
    ):
        setattr(AutoScalingBackend, name, patch)
    lifecycle.set_resolver(resolve)

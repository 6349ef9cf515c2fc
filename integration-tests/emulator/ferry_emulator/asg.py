"""Patches of moto's Auto Scaling models: launches and terminations that honour lifecycle hooks.

* Launches go one instance at a time into the AZ chosen by the placement
  control or, by default, AWS-style balancing (fewest instances, ties in list
  order), with a SubnetId consistent with that AZ. With a launch hook the
  instance waits in ``Pending:Wait``.
* Terminations (TerminateInstanceInAutoScalingGroup, scale-in, SetInstanceHealth
  Unhealthy) wait in ``Terminating:Wait`` when the group has a terminate hook;
  the EC2 instance stays running until the action completes.
* Replacements launch after the terminate completes, or at once when the
  ``replacement_order`` setting is ``before_terminate``. They come from the
  group's warm pool when it has an instance ready (warm_pool.py).
* Scale-in under a warm pool's ``ReuseOnScaleIn`` returns instances to the pool.

Capacity counts instances in Pending*, InService (not Terminating*, not Standby).
"""

from __future__ import annotations

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

COUNTING_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
# (A new member is ``Pending`` for ``cold_boot_seconds`` before its hooks begin: boot.py.)

# group name -> forced AZ for its next launches (sticky until cleared)
PLACEMENT: dict[str, str] = {}


@state.on_reset
def _reset() -> None:
    PLACEMENT.clear()


def hooks_for(group: FakeAutoScalingGroup, transition: str) -> list[Any]:
    return [
        h
        for h in group.autoscaling_backend.lifecycle_hooks.values()
        if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition
    ]


def _counting(group: FakeAutoScalingGroup) -> list[InstanceState]:
    return [s for s in group.instance_states if s.lifecycle_state in COUNTING_STATES]


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


def choose_zone(group: FakeAutoScalingGroup) -> tuple[str, str | None]:
    """The (AZ, subnet id) of the group's next launch."""
    pairs = _zone_subnets(group)
    zones = [az for az, _ in pairs]
    forced = PLACEMENT.get(group.name)
    if forced and forced not in zones:
        print(
            f"ferry-emulator: placement {forced} is not an AZ of group {group.name} {zones}; balancing",
            file=sys.stderr,
        )
        forced = None
    if forced:
        az = forced
    else:
        counts = {z: 0 for z in zones}
        for st in _counting(group):
            if st.instance.placement.zone in counts:
                counts[st.instance.placement.zone] += 1
        az = min(zones, key=lambda z: (counts[z], zones.index(z)))
    subnet = dict(pairs)[az]
    if subnet is None:
        default = group.autoscaling_backend.ec2_backend.get_default_subnets().get(az)
        subnet = default.id if default is not None else None
    return az, subnet


# -- launch ---------------------------------------------------------------------
def run_instance(group: FakeAutoScalingGroup, propagated_tags: dict[str, str]) -> Any:
    """Run one EC2 instance of the group in the AZ placement or balancing chooses (not yet a member)."""
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
    az, subnet_id = choose_zone(group)
    reservation = group.autoscaling_backend.ec2_backend.run_instances(
        group.image_id,
        1,
        group.user_data,
        group.security_groups,
        instance_type=group.instance_type,
        tags={"instance": dict(tags)},
        placement=az,
        launch_config=group.launch_config,
        launch_template=launch_template,
        is_instance_type_default=False,
        associate_public_ip=associate_public_ip,
        subnet_id=subnet_id,
    )
    instance = reservation.instances[0]
    instance.autoscaling_group = group
    return instance


def _launch(group: FakeAutoScalingGroup, count: int, propagated_tags: dict[str, str], cold: bool = False) -> None:
    """Add ``count`` instances to the group: from the warm pool when it has one ready (unless ``cold``),
    else a new launch; with a launch hook each waits in ``Pending:Wait``."""
    for _ in range(count):
        if not cold and warm_pool.enter_service(group):
            continue
        instance = run_instance(group, propagated_tags)
        st = InstanceState(
            instance,
            lifecycle_state="Pending",
            protected_from_scale_in=group.new_instances_protected_from_scale_in,
        )
        group.instance_states.append(st)
        boot.join(group, st, state.SETTINGS.cold_boot_seconds)


def launch_missing(group: FakeAutoScalingGroup) -> None:
    """Launch instances until the counting instances reach the desired capacity; refill the warm pool."""
    if getattr(group, "_ferry_deleting", False):
        return
    missing = (group.desired_capacity or 0) - len(_counting(group))
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
        lifecycle.start(group, st.instance.id, hooks)
        if state.SETTINGS.replacement_order == "before_terminate":
            launch_missing(group)
    else:
        finish_terminate(group, st)


def finish_terminate(group: FakeAutoScalingGroup, st: InstanceState) -> None:
    """Terminate the EC2 instance, drop it from the group, launch a replacement if short."""
    lifecycle.cancel_instance(st.instance.id)
    st.lifecycle_state = "Terminated"
    if st.instance.state not in ("terminated", "shutting-down"):
        group.autoscaling_backend.ec2_backend.terminate_instances([st.instance.id])
    group.instance_states = [s for s in group.instance_states if s is not st]
    launch_missing(group)


def _find(backend: AutoScalingBackend, instance_id: str) -> tuple[FakeAutoScalingGroup, InstanceState]:
    for group in backend.autoscaling_groups.values():
        for st in group.instance_states:
            if st.instance.id == instance_id:
                return group, st
    raise ValidationError(
        f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
    )


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
        else:
            finish_terminate(group, st)
    elif action.transition == lifecycle.TERMINATING and st.lifecycle_state == "Terminating:Wait":
        finish_terminate(group, st)
    elif action.transition == lifecycle.TERMINATING and st.lifecycle_state == "ReplacingRootVolume:Wait":
        refresh.root_volume_replaced(group, st, result)


# -- patched moto methods -------------------------------------------------------
def _active_instances(self: FakeAutoScalingGroup) -> list[InstanceState]:
    return _counting(self)


def _replace_instances(self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]) -> None:
    _launch(self, count_needed, propagated_tags)


def _set_desired_capacity(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
    self.desired_capacity = self.min_size if new_capacity is None else new_capacity
    counting = _counting(self)
    excess = len(counting) - (self.desired_capacity or 0)
    if excess > 0:
        for st in _scale_in_victims(self, counting, excess):
            if warm_pool.reuse_on_scale_in(self):
                warm_pool.return_to_pool(self, st)
            else:
                begin_terminate(self, st)
        warm_pool.refill(self)
    else:
        launch_missing(self)
    if self.name in self.autoscaling_backend.autoscaling_groups:
        self.autoscaling_backend.update_attached_elbs(self.name)
        self.autoscaling_backend.update_attached_target_groups(self.name)


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
    return TerminateInstanceActivity(st.instance, original_size)


def _set_instance_health(self: AutoScalingBackend, instance_id: str, health_status: str) -> None:
    group, st = _find(self, instance_id)
    st.health_status = health_status
    if health_status == "Unhealthy" and st.lifecycle_state == "InService":
        begin_terminate(group, st)


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
        self.update_attached_elbs(group.name)
    warm_pool.forget_instances(instance_ids)


_original_delete = AutoScalingBackend.delete_auto_scaling_group


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


_original_describe_instances = AutoScalingBackend.describe_auto_scaling_instances


def _describe_auto_scaling_instances(self: AutoScalingBackend, instance_ids: list[str]) -> list[InstanceState]:
    """Members and, as on AWS, warm-pool instances."""
    found = _original_describe_instances(self, instance_ids)
    found.extend(s for s in warm_pool.all_warm() if not instance_ids or s.instance.id in instance_ids)
    return found


def install() -> None:
    AutoScalingBackend.describe_auto_scaling_instances = _describe_auto_scaling_instances  # type: ignore[method-assign]
    FakeAutoScalingGroup.active_instances = _active_instances  # type: ignore[method-assign]
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace_instances  # type: ignore[method-assign]
    FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity  # type: ignore[method-assign]
    AutoScalingBackend.terminate_instance = _terminate_instance  # type: ignore[method-assign]
    AutoScalingBackend.set_instance_health = _set_instance_health  # type: ignore[method-assign]
    AutoScalingBackend.notify_terminate_instances = _notify_terminate_instances  # type: ignore[method-assign]
    AutoScalingBackend.delete_auto_scaling_group = _delete_group  # type: ignore[method-assign]
    lifecycle.set_resolver(resolve)

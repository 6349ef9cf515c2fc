"""Auto Scaling API handlers added to or replacing moto's ``AutoScalingResponse`` methods.

* ``PutLifecycleHook`` keeps every field (target, role, timeout, default result,
  metadata), validates them, and sends ``autoscaling:TEST_NOTIFICATION`` to an
  SQS target.
* ``CreateAutoScalingGroup`` honours ``LifecycleHookSpecificationList`` (the
  hooks exist before the first launch, as on AWS).
* ``CompleteLifecycleAction`` and ``RecordLifecycleActionHeartbeat`` (moto lacks
  both) act on active lifecycle actions found by token or instance id.
* ``PutWarmPool``/``DescribeWarmPool``/``DeleteWarmPool`` act on real warm
  instances (warm_pool.py); ``StartInstanceRefresh``,
  ``DescribeInstanceRefreshes`` and ``CancelInstanceRefresh`` (moto lacks them)
  run refreshes (refresh.py).
"""

from __future__ import annotations

from typing import Any

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import AutoScalingBackend, LifecycleHook
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult

from . import lifecycle, warm_pool
from . import refresh as refresh_mod

TRANSITIONS = (lifecycle.LAUNCHING, lifecycle.TERMINATING)
RESULTS = ("CONTINUE", "ABANDON")
GLOBAL_CAP = 172800


def put_hook(backend: AutoScalingBackend, spec: dict[str, Any], group_must_exist: bool = True) -> LifecycleHook:
    """Create or update a hook from PutLifecycleHook-style ``spec``; sends the test notification."""
    group_name = spec.get("AutoScalingGroupName")
    name = spec.get("LifecycleHookName")
    if not name:
        raise ValidationError("LifecycleHookName is required")
    if group_must_exist and group_name not in backend.autoscaling_groups:
        raise ValidationError(f"Group {group_name} not found")
    existing: LifecycleHook | None = backend.lifecycle_hooks.get(f"{group_name}_{name}")
    transition = spec.get("LifecycleTransition") or (existing.lifecycle_transition if existing else None)
    if transition not in TRANSITIONS:
        raise ValidationError(
            f"Invalid Lifecycle Transition {transition!r}: must be one of {', '.join(TRANSITIONS)}"
        )
    result = spec.get("DefaultResult") or (existing.default_result if existing else "ABANDON")
    if result not in RESULTS:
        raise ValidationError(f"Invalid value {result!r} for DefaultResult: must be CONTINUE or ABANDON")
    timeout_raw = spec.get("HeartbeatTimeout")
    timeout = int(timeout_raw) if timeout_raw not in (None, "") else (existing.heartbeat_timeout if existing else 3600)
    if timeout <= 0 or timeout > 7200:
        raise ValidationError(f"HeartbeatTimeout {timeout} out of range (1..7200 in the emulator)")
    target = spec.get("NotificationTargetARN", existing.notification_target_arn if existing else None) or None
    role = spec.get("RoleARN", existing.role_arn if existing else None) or None
    metadata = spec.get("NotificationMetadata", getattr(existing, "notification_metadata", None)) or None

    if target and "NotificationTargetARN" in spec:
        group = backend.autoscaling_groups.get(group_name)
        if group is not None and not lifecycle.send_to_target(target, lifecycle.test_notification(group, None)):
            raise ValidationError(
                f"Unable to publish test message to notification target {target} using IAM role {role}. "
                "Please check your target and role configuration and try to put lifecycle hook again."
            )

    hook = existing or backend.create_lifecycle_hook(name, group_name, transition, timeout, result)
    hook.lifecycle_transition = transition
    hook.heartbeat_timeout = timeout
    hook.default_result = result
    hook.notification_target_arn = target
    hook.role_arn = role
    hook.notification_metadata = metadata
    hook.global_timeout = min(GLOBAL_CAP, 100 * timeout)
    return hook


def _put_lifecycle_hook(self: AutoScalingResponse) -> ActionResult:
    keys = (
        "AutoScalingGroupName", "LifecycleHookName", "LifecycleTransition", "RoleARN",
        "NotificationTargetARN", "NotificationMetadata", "HeartbeatTimeout", "DefaultResult",
    )
    spec = {k: self._get_param(k) for k in keys if self._get_param(k) is not None}
    put_hook(self.autoscaling_backend, spec)
    return EmptyResult()


_original_create_group = AutoScalingResponse.create_auto_scaling_group


def _create_auto_scaling_group(self: AutoScalingResponse) -> ActionResult:
    group_name = self._get_param("AutoScalingGroupName")
    if group_name in self.autoscaling_backend.autoscaling_groups:
        raise ValidationError(f"AutoScalingGroup by this name already exists - A group with the name {group_name} already exists")
    specs = self._get_param("LifecycleHookSpecificationList", []) or []
    for spec in specs:
        put_hook(self.autoscaling_backend, {**spec, "AutoScalingGroupName": group_name}, group_must_exist=False)
    try:
        result = _original_create_group(self)
    except Exception:
        for spec in specs:
            self.autoscaling_backend.lifecycle_hooks.pop(f"{group_name}_{spec.get('LifecycleHookName')}", None)
        raise
    group = self.autoscaling_backend.autoscaling_groups[group_name]
    _keep_maintenance_policy(self, group)
    for spec in specs:
        target = spec.get("NotificationTargetARN")
        if target:
            lifecycle.send_to_target(target, lifecycle.test_notification(group, None))
    return result


def _find_action(self: AutoScalingResponse) -> lifecycle.Action:
    return lifecycle.find_active(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )


def _complete_lifecycle_action(self: AutoScalingResponse) -> ActionResult:
    result = self._get_param("LifecycleActionResult")
    if result not in RESULTS:
        raise ValidationError(f"Invalid value {result!r} for LifecycleActionResult: must be CONTINUE or ABANDON")
    action = _find_action(self)
    lifecycle.finish(action, result)
    return EmptyResult()


def _record_lifecycle_action_heartbeat(self: AutoScalingResponse) -> ActionResult:
    lifecycle.heartbeat(_find_action(self))
    return EmptyResult()


def _keep_maintenance_policy(self: AutoScalingResponse, group: Any) -> None:
    """Keeps ``InstanceMaintenancePolicy`` (moto drops it): reported by Describe, the default preferences
    of an instance refresh."""
    policy = self._get_param("InstanceMaintenancePolicy")
    if policy is None:
        return
    lo, hi = policy.get("MinHealthyPercentage"), policy.get("MaxHealthyPercentage")
    if lo is None and hi is None:
        group.instance_maintenance_policy = None
        return
    lo, hi = int(lo if lo is not None else -1), int(hi if hi is not None else -1)
    if not (0 <= lo <= 100 and 100 <= hi <= 200 and hi - lo <= 100):
        raise ValidationError(f"Invalid InstanceMaintenancePolicy: MinHealthyPercentage {lo}, MaxHealthyPercentage {hi}")
    group.instance_maintenance_policy = {"MinHealthyPercentage": lo, "MaxHealthyPercentage": hi}


_original_update_group = AutoScalingResponse.update_auto_scaling_group


def _update_auto_scaling_group(self: AutoScalingResponse) -> ActionResult:
    result = _original_update_group(self)
    group = self.autoscaling_backend.autoscaling_groups.get(self._get_param("AutoScalingGroupName"))
    if group is not None:
        _keep_maintenance_policy(self, group)
    return result


# -- warm pools and instance refreshes ------------------------------------------------
_original_put_warm_pool = AutoScalingResponse.put_warm_pool


def _group(self: AutoScalingResponse) -> Any:
    name = self._get_param("AutoScalingGroupName")
    group = self.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


def _put_warm_pool(self: AutoScalingResponse) -> ActionResult:
    group = _group(self)
    if warm_pool.pool(group) is not None and getattr(group.warm_pool, "status", None) == "PendingDelete":
        raise ValidationError(f"The warm pool of {group.name} is being deleted; try again once it is gone.")
    result = _original_put_warm_pool(self)
    warm_pool.refill(group)
    return result


def _describe_warm_pool(self: AutoScalingResponse) -> ActionResult:
    group = _group(self)
    return ActionResult({"WarmPoolConfiguration": warm_pool.pool(group), "Instances": list(warm_pool.warm(group))})


def _delete_warm_pool(self: AutoScalingResponse) -> ActionResult:
    group = _group(self)
    if warm_pool.pool(group) is None:
        raise ValidationError(f"No warm pool found for Auto Scaling group {group.name}")
    warm_pool.delete(group, force=str(self._get_param("ForceDelete")).lower() == "true")
    return EmptyResult()


def _start_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    group = _group(self)
    strategy = self._get_param("Strategy") or "Rolling"
    refresh = refresh_mod.start(group, strategy, self._get_param("Preferences") or {})
    return ActionResult({"InstanceRefreshId": refresh.id})


def _describe_instance_refreshes(self: AutoScalingResponse) -> ActionResult:
    name = self._get_param("AutoScalingGroupName")
    ids = self._get_param("InstanceRefreshIds") or []
    return ActionResult({"InstanceRefreshes": refresh_mod.describe(name, ids)})


def _cancel_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    refresh = refresh_mod.cancel(self._get_param("AutoScalingGroupName"))
    return ActionResult({"InstanceRefreshId": refresh.id})


def install() -> None:
    AutoScalingResponse.update_auto_scaling_group = _update_auto_scaling_group  # type: ignore[method-assign]
    AutoScalingResponse.put_warm_pool = _put_warm_pool  # type: ignore[method-assign]
    AutoScalingResponse.describe_warm_pool = _describe_warm_pool  # type: ignore[method-assign]
    AutoScalingResponse.delete_warm_pool = _delete_warm_pool  # type: ignore[method-assign]
    AutoScalingResponse.start_instance_refresh = _start_instance_refresh  # type: ignore[attr-defined]
    AutoScalingResponse.describe_instance_refreshes = _describe_instance_refreshes  # type: ignore[attr-defined]
    AutoScalingResponse.cancel_instance_refresh = _cancel_instance_refresh  # type: ignore[attr-defined]
    AutoScalingResponse.put_lifecycle_hook = _put_lifecycle_hook  # type: ignore[method-assign]
    AutoScalingResponse.create_auto_scaling_group = _create_auto_scaling_group  # type: ignore[method-assign]
    AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action  # type: ignore[attr-defined]
    AutoScalingResponse.record_lifecycle_action_heartbeat = _record_lifecycle_action_heartbeat  # type: ignore[attr-defined]

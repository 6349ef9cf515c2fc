"""Lifecycle actions: start, notify, heartbeat, complete, expire.

One :class:`Action` exists per (instance, hook) while an instance waits in
``Pending:Wait``, ``Terminating:Wait``, ``ReplacingRootVolume:Wait`` or a warm
pool's ``Warmed:Pending:Wait`` / ``Warmed:Terminating:Wait``; it carries the
notification's ``Origin``, ``Destination`` and ``Action``. Its notification goes to the hook's
SQS target in AWS's raw JSON shape. ``CompleteLifecycleAction`` and
``RecordLifecycleActionHeartbeat`` find an active action by token or instance
id. A ticker thread applies the hook's ``DefaultResult`` when the heartbeat
timeout or the global timeout passes. When every action of an instance's
transition is done (or one ABANDONs), the resolver registered by asg.py moves
the instance on.

All functions here expect the caller to hold ``state.LOCK``.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.autoscaling.exceptions import ValidationError

from . import state

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
GLOBAL_CAP_SECONDS = 48 * 3600
TICK_SECONDS = 0.1


@dataclass
class Action:
    token: str
    instance_id: str
    group: str
    hook: str
    transition: str
    account_id: str
    region: str
    heartbeat_timeout: float
    default_result: str
    started: float
    last_heartbeat: float
    heartbeats: int = 0
    state: str = "active"
    result: str | None = None
    finished: float | None = None
    # The notification's Origin and Destination (None: the transition's default) and Action, if any.
    origin: str | None = None
    destination: str | None = None
    kind: str | None = None

    def deadline(self) -> float:
        scale = state.SETTINGS.hook_timeout_scale
        timeout = self.heartbeat_timeout * scale
        cap = min(GLOBAL_CAP_SECONDS, 100 * self.heartbeat_timeout) * scale
        return min(self.last_heartbeat + timeout, self.started + cap)

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "instance_id": self.instance_id,
            "group": self.group,
            "hook": self.hook,
            "transition": self.transition,
            "state": self.state,
            "result": self.result,
            "started": state.iso(self.started),
            "last_heartbeat": state.iso(self.last_heartbeat),
            "finished": state.iso(self.finished),
            "heartbeats": self.heartbeats,
            "origin": self.origin_name(),
            "destination": self.destination_name(),
            "action": self.kind,
        }

    def origin_name(self) -> str:
        return self.origin or ("EC2" if self.transition == LAUNCHING else "AutoScalingGroup")

    def destination_name(self) -> str:
        return self.destination or ("AutoScalingGroup" if self.transition == LAUNCHING else "EC2")


# (the action that decided the transition, result) -> None; set by asg.py
Resolver = Callable[["Action", str], None]
_resolver: Resolver | None = None
ACTIONS: dict[str, Action] = {}


def set_resolver(resolver: Resolver) -> None:
    global _resolver
    _resolver = resolver


@state.on_reset
def _reset() -> None:
    ACTIONS.clear()


# -- notifications -----------------------------------------------------------
def send_to_target(target_arn: str | None, body: dict[str, Any]) -> bool:
    """Send ``body`` as JSON to the SQS queue named by ``target_arn``; False if it does not exist."""
    if not target_arn or not target_arn.startswith("arn:") or ":sqs:" not in target_arn:
        return False
    from moto.sqs.models import sqs_backends

    parts = target_arn.split(":")
    if len(parts) != 6:
        return False
    region, account, name = parts[3], parts[4], parts[5]
    backend = sqs_backends[account][region]
    if name not in backend.queues:
        return False
    backend.send_message(name, json.dumps(body))
    return True


def test_notification(group: Any, hook: Any) -> dict[str, Any]:
    return {
        "AccountId": group.account_id,
        "RequestId": str(uuid.uuid4()),
        "AutoScalingGroupARN": group.arn,
        "AutoScalingGroupName": group.name,
        "Service": "AWS Auto Scaling",
        "Event": "autoscaling:TEST_NOTIFICATION",
        "Time": state.iso(state.now()),
    }


def _hook_message(action: Action, hook: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Origin": action.origin_name(),
        "Destination": action.destination_name(),
        "LifecycleHookName": action.hook,
        "AccountId": action.account_id,
        "RequestId": str(uuid.uuid4()),
        "LifecycleTransition": action.transition,
        "AutoScalingGroupName": action.group,
        "Service": "AWS Auto Scaling",
        "Time": state.iso(action.started),
        "EC2InstanceId": action.instance_id,
        "LifecycleActionToken": action.token,
    }
    if action.kind:
        body["Action"] = action.kind
    metadata = getattr(hook, "notification_metadata", None)
    if metadata:
        body["NotificationMetadata"] = metadata
    return body


# -- actions -----------------------------------------------------------------
def start(
    group: Any,
    instance_id: str,
    hooks: list[Any],
    origin: str | None = None,
    destination: str | None = None,
    kind: str | None = None,
) -> list[Action]:
    """Begin one action per hook for ``instance_id`` and send its notification (Origin, Destination and
    Action as given; None is the transition's default and no Action)."""
    started = []
    now = state.now()
    for hook in hooks:
        action = Action(
            token=str(uuid.uuid4()),
            instance_id=instance_id,
            group=group.name,
            hook=hook.name,
            transition=hook.lifecycle_transition,
            account_id=group.account_id,
            region=group.region,
            heartbeat_timeout=float(hook.heartbeat_timeout),
            default_result=hook.default_result,
            started=now,
            last_heartbeat=now,
            origin=origin,
            destination=destination,
            kind=kind,
        )
        ACTIONS[action.token] = action
        started.append(action)
        target = getattr(hook, "notification_target_arn", None)
        if target and not send_to_target(target, _hook_message(action, hook)):
            print(f"ferry-emulator: hook {hook.name}: target {target} not found", file=sys.stderr)
    return started


def find_active(group: str, hook: str, token: str | None, instance_id: str | None) -> Action:
    """The active action matching, or AWS's ``No active Lifecycle Action found`` ValidationError."""
    if not token and not instance_id:
        raise ValidationError("Either LifecycleActionToken or InstanceId must be specified.")
    for action in ACTIONS.values():
        if action.state != "active" or action.group != group or action.hook != hook:
            continue
        if token and action.token != token:
            continue
        if not token and action.instance_id != instance_id:
            continue
        return action
    if token:
        raise ValidationError(f"No active Lifecycle Action found with token {token}")
    raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")


def heartbeat(action: Action) -> None:
    action.last_heartbeat = state.now()
    action.heartbeats += 1


def finish(action: Action, result: str, how: str = "completed") -> None:
    """Mark ``action`` done with ``result`` and, once its transition is decided, resolve it."""
    action.state = how
    action.result = result
    action.finished = state.now()
    siblings = [
        a
        for a in ACTIONS.values()
        if a.instance_id == action.instance_id and a.transition == action.transition and a.state == "active"
    ]
    if result == "ABANDON":
        for other in siblings:  # ABANDON stops the remaining hooks of this transition
            other.state, other.result, other.finished = "completed", "ABANDON", action.finished
        siblings = []
    if not siblings and _resolver is not None:
        _resolver(action, result)


def cancel_instance(instance_id: str) -> None:
    """The instance went away outside the hook flow: its active actions are dropped (expired, no result)."""
    for action in ACTIONS.values():
        if action.instance_id == instance_id and action.state == "active":
            action.state, action.finished = "expired", state.now()


def active_for(instance_id: str) -> list[Action]:
    return [a for a in ACTIONS.values() if a.instance_id == instance_id and a.state == "active"]


def expire_due() -> None:
    """Apply DefaultResult to every active action past its deadline."""
    now = state.now()
    for action in list(ACTIONS.values()):
        if action.state == "active" and now >= action.deadline():
            finish(action, action.default_result, how="expired")


def snapshot() -> list[dict[str, Any]]:
    return [a.to_json() for a in sorted(ACTIONS.values(), key=lambda a: a.started)]


class Ticker(threading.Thread):
    """Background thread that expires lifecycle actions and runs due work every ~100 ms."""

    def __init__(self) -> None:
        super().__init__(name="ferry-lifecycle-ticker", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(TICK_SECONDS):
            try:
                with state.LOCK:
                    expire_due()
                    state.run_due()
            except Exception as exc:  # never let the ticker die
                import traceback

                print(f"ferry-emulator: ticker error: {exc!r}", file=sys.stderr)
                traceback.print_exc()

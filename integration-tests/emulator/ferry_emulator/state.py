"""Shared state of the ferry extension: the global lock, the clock and the settings.

Every request that reaches moto's EC2 or Auto Scaling backends, the lifecycle
ticker and the control endpoints all run under ``LOCK`` (re-entrant), so the
extension's bookkeeping and moto's models are only ever mutated by one thread
at a time. SQS calls are not serialised (moto's SQS has its own locking and a
long poll must not block everything else).

Other modules register a ``reset`` callback with :func:`on_reset`; the
``/_emulator/reset`` endpoint runs them all. Deferred work that must be applied
before anything observes the models (an instance's end of ``shutting-down``)
registers with :func:`on_due`; :func:`run_due` runs it (the ticker does, and so
does every locked request before it reaches moto).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

LOCK = threading.RLock()

REPLACEMENT_ORDERS = ("after_terminate", "before_terminate")
NULLABLE = ("incremental_snapshot_seconds",)


def now() -> float:
    """Wall-clock time in seconds (the emulator's one clock)."""
    return time.time()


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a Z, as AWS writes times."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class Settings:
    """Settings changed through ``/_emulator/config``."""

    snapshot_seconds: float = 0.0
    volume_create_seconds: float = 0.0
    attach_seconds: float = 0.0
    detach_seconds: float = 0.0
    replacement_order: str = "after_terminate"
    # Multiplies every hook's HeartbeatTimeout (and so its global cap).
    hook_timeout_scale: float = 1.0
    # Pending time of incremental snapshots; None = same as snapshot_seconds.
    incremental_snapshot_seconds: float | None = None
    # How long a terminated instance stays ``shutting-down`` (0 = terminated at once).
    instance_shutdown_seconds: float = 0.0
    # How long a new member is ``Pending`` before its launch hooks begin: a cold launch's boot, and a warm
    # instance's start out of its pool (boot.py).
    cold_boot_seconds: float = 0.0
    warm_start_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, data: dict[str, Any]) -> None:
        """Validate ``data`` fully, then apply it; raises ValueError naming the bad input."""
        known = {f.name: f for f in fields(self)}
        staged: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown config key {key!r}; known: {sorted(known)}")
            if key == "replacement_order":
                if value not in REPLACEMENT_ORDERS:
                    raise ValueError(
                        f"replacement_order must be one of {list(REPLACEMENT_ORDERS)}, got {value!r}"
                    )
                staged[key] = value
                continue
            if key in NULLABLE and value is None:
                staged[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                kind = "a number or null" if key in NULLABLE else "a number"
                raise ValueError(f"{key} must be {kind}, got {value!r}")
            if value < 0:
                raise ValueError(f"{key} must not be negative, got {value!r}")
            if key == "hook_timeout_scale" and value == 0:
                raise ValueError("hook_timeout_scale must be positive")
            staged[key] = float(value)
        for key, value in staged.items():
            setattr(self, key, value)


SETTINGS = Settings()

_reset_callbacks: list[Callable[[], None]] = []
_due_callbacks: list[Callable[[], None]] = []


def on_due(callback: Callable[[], None]) -> Callable[[], None]:
    """Register deferred work run (under LOCK) by :func:`run_due`."""
    _due_callbacks.append(callback)
    return callback


def run_due() -> None:
    """Apply every registered piece of deferred work that is due now."""
    with LOCK:
        for callback in _due_callbacks:
            callback()


def on_reset(callback: Callable[[], None]) -> Callable[[], None]:
    """Register a callback run (under LOCK) by :func:`reset_extension`."""
    _reset_callbacks.append(callback)
    return callback


def reset_extension() -> None:
    """Clear the extension's own state: settings and every registered module's state."""
    global SETTINGS
    with LOCK:
        fresh = Settings()
        for f in fields(Settings):
            setattr(SETTINGS, f.name, getattr(fresh, f.name))
        for callback in _reset_callbacks:
            callback()

"""Faults on demand: token-bucket throttling, random 5xx errors, latency and an AZ outage.

The configuration is set through ``/_emulator/faults`` (see control.py) and
read by the middleware (throttle, errors, latency; the buckets are in
throttle.py) and by the EC2 patches
(the AZ outage: impaired status checks, held snapshots, detaches and
shutdowns). When the outage begins, ends, moves to another AZ or changes its
``snapshot_mode``, the observers registered with :meth:`Faults.on_outage_change`
are told (under ``state.LOCK``), so the EC2 patches can hold and release the
AZ's timed operations at that instant.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from . import state, throttle

SNAPSHOT_MODES = ("pending", "error")
_KEYS = ("throttle", "error_rate", "latency_ms", "az_outage", "seed")

# (az, snapshot_mode, since): an active AZ outage
Outage = tuple[str, str, float]
# (the outage before a change or None, the outage after it or None) -> None
OutageObserver = Callable[[Outage | None, Outage | None], None]


class Faults:
    """The current fault configuration and its runtime state (buckets, RNG)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._observers: list[OutageObserver] = []
        self.clear()

    def clear(self) -> None:
        """Forget every fault and the runtime state, telling no observer (the reset path)."""
        with self._lock:
            self.config: dict[str, Any] = {}
            self.buckets = throttle.Buckets()
            self.rng = random.Random()
            self.outage_since: float | None = None

    # -- configuration -------------------------------------------------
    def on_outage_change(self, callback: OutageObserver) -> OutageObserver:
        """Register ``callback(old, new)``, run under ``state.LOCK`` whenever the outage changes."""
        self._observers.append(callback)
        return callback

    def update(self, data: Any, known_azs: set[str]) -> None:
        """Validate and merge a partial update; raises ValueError naming the bad input."""
        if not isinstance(data, dict):
            raise ValueError("faults body must be a JSON object")
        for key in data:
            if key not in _KEYS:
                raise ValueError(f"unknown faults key {key!r}; known: {list(_KEYS)}")
        staged = dict(self.config)
        if "throttle" in data:
            staged["throttle"] = throttle.merge(staged.get("throttle", {}), data["throttle"])
        if "error_rate" in data:
            rate = data["error_rate"]
            if rate is not None and (not _is_number(rate) or not 0 <= rate <= 1):
                raise ValueError(f"error_rate must be a number in [0, 1], got {rate!r}")
            staged["error_rate"] = rate
        if "latency_ms" in data:
            staged["latency_ms"] = _latency(data["latency_ms"])
        if "az_outage" in data:
            staged["az_outage"] = _outage(data["az_outage"], known_azs)
        if "seed" in data:
            seed = data["seed"]
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ValueError(f"seed must be an integer, got {seed!r}")
            staged["seed"] = seed
        with state.LOCK:  # no EC2 request sees the new outage before its observers ran
            old = self.outage()
            self._apply(data, staged)
            self._outage_changed(old)

    def delete(self) -> None:
        """Clear every fault (DELETE /_emulator/faults); an active outage ends, observers are told."""
        with state.LOCK:
            old = self.outage()
            self.clear()
            self._outage_changed(old)

    def _apply(self, data: dict[str, Any], staged: dict[str, Any]) -> None:
        """Install a validated configuration; an outage of a new AZ starts now."""
        with self._lock:
            old_outage = self.config.get("az_outage")
            self.config = {k: v for k, v in staged.items() if v is not None and v != {}}
            if "throttle" in data:
                self.buckets.clear()
            if "seed" in data and data["seed"] is not None:
                self.rng = random.Random(data["seed"])
            new_outage = self.config.get("az_outage")
            if new_outage is None:
                self.outage_since = None
            elif old_outage is None or old_outage["az"] != new_outage["az"]:
                self.outage_since = state.now()

    def _outage_changed(self, old: Outage | None) -> None:
        """Tell the observers if the outage's AZ or mode changed (caller holds ``state.LOCK``)."""
        new = self.outage()
        if _zone_and_mode(old) == _zone_and_mode(new):
            return
        state.run_due()  # what fell due before the change happens before it
        for callback in self._observers:
            callback(old, new)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.config)

    # -- runtime -------------------------------------------------------
    def latency_seconds(self) -> float:
        with self._lock:
            span = self.config.get("latency_ms")
            if not span:
                return 0.0
            return self.rng.uniform(span[0], span[1]) / 1000.0

    def throttled(self, service: str, action: str, access_key: str | None) -> bool:
        """Take a token from the call's buckets (throttle.py); True if the call is throttled."""
        with self._lock:
            config = self.config.get("throttle", {})
            return self.buckets.throttled(config, service, action, access_key, state.now())

    def injected_error(self) -> tuple[int, str, str] | None:
        with self._lock:
            rate = self.config.get("error_rate") or 0
            if rate <= 0 or self.rng.random() >= rate:
                return None
            if self.rng.random() < 0.5:
                return 500, "InternalError", "We encountered an internal error. Please try again."
            return 503, "ServiceUnavailable", "The service is unavailable. Please try again shortly."

    def outage(self) -> Outage | None:
        """(az, snapshot_mode, since) of the active AZ outage, if any."""
        with self._lock:
            spec = self.config.get("az_outage")
            if not spec or self.outage_since is None:
                return None
            return spec["az"], spec["snapshot_mode"], self.outage_since

    def az_down(self, az: str | None) -> bool:
        out = self.outage()
        return out is not None and az is not None and out[0] == az


def _zone_and_mode(outage: Outage | None) -> tuple[str, str] | None:
    return None if outage is None else (outage[0], outage[1])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _latency(value: Any) -> list[float] | None:
    if value is None:
        return None
    if _is_number(value):
        value = [value, value]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(_is_number(v) for v in value)
        or value[0] < 0
        or value[1] < value[0]
    ):
        raise ValueError(f"latency_ms must be [min, max] with 0 <= min <= max, got {value!r}")
    return [float(value[0]), float(value[1])]


def _outage(value: Any, known_azs: set[str]) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"az", "snapshot_mode"} or "az" not in value:
        raise ValueError('az_outage must be {"az": "...", "snapshot_mode": "pending"|"error"} or null')
    az = value["az"]
    if not isinstance(az, str) or az not in known_azs:
        raise ValueError(f"az_outage.az: unknown availability zone {az!r}")
    mode = value.get("snapshot_mode", "pending")
    if mode not in SNAPSHOT_MODES:
        raise ValueError(f"az_outage.snapshot_mode must be one of {list(SNAPSHOT_MODES)}, got {mode!r}")
    return {"az": az, "snapshot_mode": mode}


FAULTS = Faults()
state.on_reset(FAULTS.clear)

"""API throttling: token buckets per AWS action (and optionally per service), as AWS's request-rate limits.

The ``throttle`` part of ``/_emulator/faults`` (see faults.py) maps bucket keys to
``{"rate": per second, "burst": tokens}`` (``per_sec`` is accepted for ``rate``):

* ``"default"``: every action of every service gets its own bucket of this size;
* ``"<service>:*"``: every action of that service gets its own bucket (instead of ``default``);
* ``"<service>:<Action>"``: that action's own bucket (instead of the two above);
* ``"<service>"``: one bucket shared by all the service's actions, taken from as well.

plus ``"exempt": ["<access key id>", ...]``: calls signed with these keys are never throttled and take
no token (a test harness observing the system under test without using up its budget).

A call takes one token from its action's bucket and one from its service's shared bucket (those that
are configured); if either was empty it is throttled. Buckets start full and refill continuously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import wire

SERVICES = ("ec2", "autoscaling", "sqs")
DEFAULT = "default"
EXEMPT = "exempt"


@dataclass
class Bucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_key(key: str) -> None:
    if key == DEFAULT:
        return
    service, sep, action = key.partition(":")
    if service not in SERVICES or ":" in action or (sep and not action):
        raise ValueError(
            f"throttle key {key!r} must be 'default', 'exempt', one of {list(SERVICES)}, "
            "'service:*' or 'service:Action'"
        )
    if action and action != "*" and not wire.known_operation(service, action):
        raise ValueError(f"throttle key {key!r}: {service} has no action {action!r}")


def _spec(key: str, spec: Any) -> dict[str, float]:
    shape = f'throttle.{key} must be {{"rate" (or "per_sec"): number, "burst": number}}'
    if not isinstance(spec, dict) or set(spec) - {"rate", "per_sec", "burst"}:
        raise ValueError(shape)
    if ("rate" in spec) == ("per_sec" in spec):
        raise ValueError(shape + ' (exactly one of "rate" and "per_sec")')
    rate = spec["rate"] if "rate" in spec else spec["per_sec"]
    burst = spec.get("burst", 1)
    if not _is_number(rate) or rate < 0:
        raise ValueError(f"throttle.{key}.rate must be a non-negative number, got {rate!r}")
    if not _is_number(burst) or burst < 1:
        raise ValueError(f"throttle.{key}.burst must be a number >= 1, got {burst!r}")
    return {"rate": float(rate), "burst": float(burst)}


def merge(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """Validate ``update`` and merge it into ``current`` per key (``null`` removes a key, or all)."""
    if update is None:
        return {}
    if not isinstance(update, dict):
        raise ValueError("throttle must be an object of {bucket key: {rate, burst}} (and 'exempt': [keys])")
    merged = dict(current)
    for key, spec in update.items():
        if not isinstance(key, str):
            raise ValueError(f"throttle key {key!r} must be a string")
        if key == EXEMPT:
            if spec is None:
                merged.pop(key, None)
            elif isinstance(spec, list) and all(isinstance(k, str) and k for k in spec):
                merged[key] = sorted(set(spec))
            else:
                raise ValueError("throttle.exempt must be a list of access key ids (or null)")
            continue
        _check_key(key)
        if spec is None:
            merged.pop(key, None)
        else:
            merged[key] = _spec(key, spec)
    return merged


class Buckets:
    """The runtime buckets of one throttle configuration (not thread-safe: the caller locks)."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}

    def clear(self) -> None:
        self._buckets = {}

    def _take(self, key: str, spec: dict[str, float], now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(spec["rate"], spec["burst"], spec["burst"], now)
            self._buckets[key] = bucket
        return bucket.take(now)

    def throttled(
        self, config: dict[str, Any], service: str, action: str, access_key: str | None, now: float
    ) -> bool:
        """Take a token from the call's buckets; True if any of them was empty."""
        if not config or (access_key is not None and access_key in config.get(EXEMPT, ())):
            return False
        key = f"{service}:{action}"
        ok = True
        spec = config.get(key) or config.get(f"{service}:*") or config.get(DEFAULT)
        if spec is not None:
            ok = self._take(key, spec, now) and ok
        if service in config:
            ok = self._take(service, config[service], now) and ok
        return not ok

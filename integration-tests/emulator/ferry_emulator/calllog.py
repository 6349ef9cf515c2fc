"""The call log: every AWS API call the emulator answered, for tests to assert against.

Each entry says who signed the call (``access_key``), whether it was throttled and, when IAM enforcement
is on for its signer, every authorization request it made and how the policy answered (``authz``); :meth:`CallLog.summary`
counts calls, throttled calls and errors per action, for benchmarks.
"""

from __future__ import annotations

import threading
from typing import Any

from . import state

MAX_ENTRIES = 100_000


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._seq = 0

    def clear(self) -> None:
        with self._lock:
            self._calls = []

    def reset(self) -> None:
        with self._lock:
            self._calls = []
            self._seq = 0

    def record(
        self,
        service: str,
        action: str | None,
        params: dict[str, Any],
        status: int,
        error_code: str | None,
        started: float,
        access_key: str | None = None,
        throttled: bool = False,
        authz: list[dict[str, Any]] | None = None,
    ) -> None:
        finished = state.now()
        with self._lock:
            self._seq += 1
            self._calls.append(
                {
                    "seq": self._seq,
                    "time": state.iso(started),
                    "duration_ms": round((finished - started) * 1000.0, 3),
                    "service": service,
                    "action": action,
                    "params": params,
                    "status": status,
                    "error_code": error_code,
                    "access_key": access_key,
                    "throttled": throttled,
                    "authz": authz,
                }
            )
            if len(self._calls) > MAX_ENTRIES:
                del self._calls[: len(self._calls) - MAX_ENTRIES]

    def query(
        self,
        service: str | None = None,
        action: str | None = None,
        since: int | None = None,
        access_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Calls matching every given filter; ``since`` keeps calls with seq > since."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (service is None or c["service"] == service)
                and (action is None or c["action"] == action)
                and (since is None or c["seq"] > since)
                and (access_key is None or c["access_key"] == access_key)
            ]

    def summary(self, **filters: Any) -> dict[str, Any]:
        """Counts of the calls :meth:`query` would return: in total and per ``service:Action``.

        ``calls`` counts every call (throttled ones included), ``throttled`` those refused by a
        throttle bucket, ``errors`` every answer >= 400 (throttled ones included).
        """
        total = {"calls": 0, "throttled": 0, "errors": 0}
        actions: dict[str, dict[str, int]] = {}
        for c in self.query(**filters):
            row = actions.setdefault(f"{c['service']}:{c['action']}", {"calls": 0, "throttled": 0, "errors": 0})
            for counts in (total, row):
                counts["calls"] += 1
                counts["throttled"] += int(c["throttled"])
                counts["errors"] += int(c["status"] >= 400)
        with self._lock:
            last = self._seq
        return {**total, "last_seq": last, "actions": dict(sorted(actions.items()))}


CALLS = CallLog()
state.on_reset(CALLS.reset)

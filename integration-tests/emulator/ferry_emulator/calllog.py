"""The call log: every AWS API call the emulator answered, for tests to assert against."""

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
    ) -> None:
        with self._lock:
            self._seq += 1
            self._calls.append(
                {
                    "seq": self._seq,
                    "time": state.iso(started),
                    "service": service,
                    "action": action,
                    "params": params,
                    "status": status,
                    "error_code": error_code,
                }
            )
            if len(self._calls) > MAX_ENTRIES:
                del self._calls[: len(self._calls) - MAX_ENTRIES]

    def query(
        self, service: str | None = None, action: str | None = None, since: int | None = None
    ) -> list[dict[str, Any]]:
        """Calls matching every given filter; ``since`` keeps calls with seq > since."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (service is None or c["service"] == service)
                and (action is None or c["action"] == action)
                and (since is None or c["seq"] > since)
            ]


CALLS = CallLog()
state.on_reset(CALLS.reset)

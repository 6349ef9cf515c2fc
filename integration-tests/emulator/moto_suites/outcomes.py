"""pytest plugin: writes every test's outcome to the JSON file named by ``MOTO_SUITES_OUTCOMES``.

``{"tests": {node id: "passed" | "failed" | "skipped"}, "errors": [collection errors]}``. A test fails if any
of its phases (setup, call, teardown) failed; an expected failure (xfail) counts as passed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_TESTS: dict[str, str] = {}
_ERRORS: list[str] = []
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        outcome = "failed"
    elif report.skipped and not hasattr(report, "wasxfail"):
        outcome = "skipped"
    else:
        outcome = "passed"
    previous = _TESTS.get(report.nodeid, "passed")
    _TESTS[report.nodeid] = max(previous, outcome, key=_RANK.__getitem__)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _ERRORS.append(report.nodeid or "<collection>")


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("MOTO_SUITES_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"tests": _TESTS, "errors": _ERRORS, "exitstatus": int(exitstatus)}, out, indent=1)

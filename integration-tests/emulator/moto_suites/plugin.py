"""pytest plugin: loads ferry's extension into the in-process moto and clears its state before each test.

``ferry_emulator.install()`` patches moto's classes once, at configure time, so every ``mock_aws`` test of
moto's suites runs against the patched moto. Before each test the extension's own state (lifecycle actions,
placement, timers, settings, …) is cleared with ``state.reset_extension()``, the extension half of the
``/_emulator/reset`` endpoint (moto's half is done by ``mock_aws`` itself). The HTTP middleware (faults,
call log, the global lock) and the lifecycle ticker are not part of an in-process run.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    import ferry_emulator

    ferry_emulator.install()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: Any) -> None:
    from ferry_emulator import state

    state.reset_extension()


def pytest_report_header(config: pytest.Config) -> str:
    return "moto-suites: ferry extension loaded (ferry_emulator.install())"

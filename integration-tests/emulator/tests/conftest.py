"""Fixtures: one emulator subprocess per session (``serve --port 0``), reset before each test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

HERE = Path(__file__).resolve().parent
SERVE = HERE.parent / "serve"
REGION = "us-east-1"


class Emulator:
    def __init__(self, url: str, proc: subprocess.Popen[str]) -> None:
        self.url = url
        self.proc = proc

    def control(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        return requests.request(method, f"{self.url}/_emulator/{path}", json=body, params=params, timeout=10)

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        resp = self.control(method, path, body, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def client(self, service: str, **config: Any) -> Any:
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, **config)
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=cfg,
        )


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [str(SERVE), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("ready http://127.0.0.1:"), f"unexpected first line {line!r}"
    emu = Emulator(line.split(" ", 1)[1], proc)
    yield emu
    proc.terminate()
    assert proc.wait(timeout=10) == 0


@pytest.fixture(autouse=True)
def _reset(emulator: Emulator) -> None:
    emulator.ok("POST", "reset")


@pytest.fixture
def ec2(emulator: Emulator) -> Any:
    return emulator.client("ec2")


@pytest.fixture
def asg(emulator: Emulator) -> Any:
    return emulator.client("autoscaling")


@pytest.fixture
def sqs(emulator: Emulator) -> Any:
    return emulator.client("sqs")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def error_code(exc: Any) -> str:
    return exc.value.response["Error"]["Code"]

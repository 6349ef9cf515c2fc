"""WSGI middleware around moto's app: control endpoints, faults, call log, error safety.

For each AWS call it: adds latency, applies throttle buckets and injected 5xx
errors, rejects unknown actions the AWS way, runs moto (under ``state.LOCK``
for EC2 and Auto Scaling; with eventual consistency on, see consistency.py), records the call, and turns any exception into an
AWS-shaped ``InternalError`` (logged to stderr) so the server never dies.
"""

from __future__ import annotations

import io
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from . import consistency, control, state, wire
from .calllog import CALLS
from .faults import FAULTS
from .iam import ENFORCER

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


class EmulatorMiddleware:
    def __init__(self, moto_app: WsgiApp) -> None:
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator"):
            code, headers, body = control.handle(environ)
            start_response(_status_line(code), headers)
            return [body]
        req: wire.AwsRequest | None = None
        try:
            body = self._read_body(environ)
            req = wire.parse_request(environ, body)
            if req is None:
                code, headers, body = self._call_moto(environ, lock=True)
            else:
                code, headers, body = self._aws_call(req, environ)
        except Exception as exc:  # the server must survive anything
            traceback.print_exc(file=sys.stderr)
            fallback = req or wire.AwsRequest("ec2", None, "us-east-1", False)
            code, headers, body = wire.error_response(fallback, 500, "InternalError", f"emulator error: {exc!r}")
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(_status_line(code), headers)
        return [body]

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    def _aws_call(self, req: wire.AwsRequest, environ: dict[str, Any]) -> wire.Response:
        started = state.now()
        delay = FAULTS.latency_seconds()
        if delay > 0:
            time.sleep(delay)
        throttled = False
        response = self._precheck(req)
        if response is None and req.action and FAULTS.throttled(req.service, req.action, req.access_key):
            throttled = True
            response = wire.throttle_error(req)
        authz: list[dict[str, Any]] | None = None
        if response is None:
            response, authz = self._authorize(req)
        if response is None:
            response = self._injected(req) or self._dispatch(req, environ)
        code, _, body = response
        error_code = wire.error_code_of(body) if code >= 400 else None
        CALLS.record(req.service, req.action, req.params, code, error_code, started, req.access_key, throttled, authz)
        return response

    @staticmethod
    def _authorize(req: wire.AwsRequest) -> tuple[wire.Response | None, list[dict[str, Any]] | None]:
        """IAM enforcement (opt-in, see iam.py): the denial AWS would answer, and the decisions made.
        Only a governed call waits for the global lock (its requests read moto's resources and tags)."""
        sources = ENFORCER.sources_for(req.access_key)
        if sources is None:
            return None, None
        with state.LOCK:
            allowed, records = ENFORCER.authorize(sources, req.service, req.action or "", req.region, req.params)
        if allowed:
            return None, records
        denied = next(r for r in records if not r["allowed"])
        return wire.access_denied(req, denied["action"], denied["resource"], denied["reason"]), records

    @staticmethod
    def _precheck(req: wire.AwsRequest) -> wire.Response | None:
        if not req.action:
            return wire.unknown_action(req, "No action specified")
        if not wire.known_operation(req.service, req.action):
            return wire.unknown_action(req)
        return None

    @staticmethod
    def _injected(req: wire.AwsRequest) -> wire.Response | None:
        injected = FAULTS.injected_error()
        return None if injected is None else wire.error_response(req, *injected)

    def _dispatch(self, req: wire.AwsRequest, environ: dict[str, Any]) -> wire.Response:
        try:
            with consistency.viewing(req.service, req.access_key):
                code, headers, body = self._call_moto(environ, lock=req.service != "sqs")
        except NotImplementedError as exc:
            return wire.unknown_action(req, f"The action {req.action} is not implemented by the emulator: {exc}")
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            return wire.error_response(req, 500, "InternalError", f"emulator error in {req.action}: {exc!r}")
        if code >= 500 and body.lstrip()[:1] == b"<" and b"<html" in body[:200].lower():
            # moto/Flask rendered an HTML error page: answer in the service's shape instead
            return wire.error_response(req, 500, "InternalError", f"emulator error in {req.action}")
        return code, headers, body

    def _call_moto(self, environ: dict[str, Any], lock: bool) -> wire.Response:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = headers
            return lambda data: None

        if lock:
            with state.LOCK:
                self._run_due()
                body = self._collect(self.moto_app(environ, capture))
        else:
            body = self._collect(self.moto_app(environ, capture))
        return captured["status"], list(captured["headers"]), body

    @staticmethod
    def _run_due() -> None:
        """Apply deferred state changes (e.g. ends of shutting-down) before moto is observed."""
        try:
            state.run_due()
        except Exception as exc:  # never fail the request for it
            print(f"ferry-emulator: deferred work error: {exc!r}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)

    @staticmethod
    def _collect(chunks: Iterable[bytes]) -> bytes:
        try:
            return b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

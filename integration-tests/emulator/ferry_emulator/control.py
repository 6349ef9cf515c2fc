"""The ``/_emulator/*`` control endpoints (JSON in, JSON out; never faulted, never logged).

    POST   /_emulator/reset        clear moto's and the extension's state
    GET    /_emulator/config       current settings;  POST merges settings
    GET    /_emulator/faults       current faults;    POST merges, DELETE clears
    GET    /_emulator/placement    forced AZs;        POST {"group", "az"|null}
    GET    /_emulator/consistency  eventual consistency; POST {"delay_seconds", "access_keys"}, DELETE off
    GET    /_emulator/calls        call log (?service=&action=&since=&access_key=); DELETE clears
    GET    /_emulator/calls/summary   counts of calls, throttled calls, errors per action (same filters)
    GET    /_emulator/lifecycle    lifecycle actions (active, completed, expired)
    GET    /_emulator/health       {"ok": true}
    POST   /_emulator/volumes/<vol-id>/write      write {"value": N} (or counter+1) to a volume
    POST   /_emulator/instances/<i-id>/write      write to every non-root volume of an instance
    GET    /_emulator/volumes/<vol-id>/data       a volume's content
    GET    /_emulator/snapshots/<snap-id>/data    a snapshot's content

Bad input answers HTTP 400 ``{"error": "..."}``; an unknown volume, snapshot or
instance 404 ``{"error": "..."}``; a refused write 409 ``{"error": "...", "refused": true}``.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any
from urllib.parse import parse_qs

from . import asg, data, lifecycle, state
from .calllog import CALLS
from .consistency import CONSISTENCY
from .faults import FAULTS
from .iam import ENFORCER
from .iam_policy import Policy, Request

Response = tuple[int, list[tuple[str, str]], bytes]


class BadRequest(Exception):
    pass


def known_azs() -> set[str]:
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    return {zone.name for zones in RegionsAndZonesBackend.zones.values() for zone in zones}


def _json(code: int, data: Any) -> Response:
    return code, [("Content-Type", "application/json")], json.dumps(data).encode()


def _body(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid JSON body: {exc}") from None


def _object(environ: dict[str, Any]) -> dict[str, Any]:
    data = _body(environ)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def reset_all() -> None:
    from moto.moto_api._internal import moto_api_backend

    with state.LOCK:
        moto_api_backend.reset()
        state.reset_extension()


def _placement(method: str, environ: dict[str, Any]) -> Response:
    if method == "GET":
        return _json(200, {"placement": dict(asg.PLACEMENT)})
    data = _object(environ)
    unknown = set(data) - {"group", "az"}
    if unknown:
        raise BadRequest(f"unknown placement key(s) {sorted(unknown)}; known: ['az', 'group']")
    group, az = data.get("group"), data.get("az", "missing")
    if not isinstance(group, str) or not group:
        raise BadRequest("placement.group must be a non-empty string")
    if az == "missing":
        raise BadRequest("placement.az is required (an AZ name, or null to clear)")
    if az is not None and (not isinstance(az, str) or az not in known_azs()):
        raise BadRequest(f"placement.az: unknown availability zone {az!r}")
    with state.LOCK:
        if az is None:
            asg.PLACEMENT.pop(group, None)
        else:
            asg.PLACEMENT[group] = az
        return _json(200, {"placement": dict(asg.PLACEMENT)})


def _call_filters(environ: dict[str, Any]) -> dict[str, Any]:
    """The call-log filters of a query string: service, action, since, access_key."""
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    known = {"service", "action", "since", "access_key"}
    unknown = set(query) - known
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    filters: dict[str, Any] = dict(query)
    if "since" in query:
        try:
            filters["since"] = int(query["since"])
        except ValueError:
            raise BadRequest(f"since must be an integer, got {query['since']!r}") from None
    return filters


def _calls(method: str, environ: dict[str, Any]) -> Response:
    if method == "DELETE":
        CALLS.clear()
        return _json(200, {"calls": []})
    return _json(200, {"calls": CALLS.query(**_call_filters(environ))})


def _iam(method: str, environ: dict[str, Any]) -> Response:
    """IAM enforcement: POST ``{"policy_files": [...], "bindings": {...}, "principals": [...]}`` or
    ``{"policies": {name: doc}, "principals": [...]}``; DELETE turns it off, GET shows it."""
    if method == "DELETE":
        ENFORCER.disable()
    elif method == "POST":
        body = _object(environ)
        unknown = set(body) - {"policy_files", "policies", "principals", "bindings", "roles"}
        if unknown:
            raise BadRequest(
                f"unknown iam key(s) {sorted(unknown)}; known: bindings, policies, policy_files, principals, roles"
            )
        principals = body.get("principals") or ["ferryd"]
        if not isinstance(principals, list) or not all(isinstance(p, str) for p in principals):
            raise BadRequest(f"principals must be a list of access key ids, got {principals!r}")
        try:
            if "policies" in body:
                if not isinstance(body["policies"], dict):
                    raise BadRequest("policies must be an object of name -> policy document")
                ENFORCER.configure_documents(body["policies"], principals)
            else:
                roles = body.get("roles") or {}
                if not isinstance(roles, dict):
                    raise BadRequest("roles must be an object of role name -> [policy files]")
                ENFORCER.configure(list(body.get("policy_files") or []), principals, body.get("bindings"), roles)
        except (OSError, ValueError, KeyError) as exc:
            raise BadRequest(f"cannot load the policies: {exc!r}") from None
    return _json(200, ENFORCER.to_json())


def _consistency(method: str, environ: dict[str, Any]) -> Response:
    """Eventual consistency: POST ``{"delay_seconds": D, "access_keys": [...] | null}``; DELETE turns it
    off; GET shows it."""
    with state.LOCK:
        if method == "DELETE":
            CONSISTENCY.configure({})
        elif method == "POST":
            try:
                CONSISTENCY.configure(_object(environ))
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        return _json(200, CONSISTENCY.to_json())


def _iam_evaluate(environ: dict[str, Any]) -> Response:
    """Evaluate recorded authorization requests (a call log's ``authz`` entries) against another policy:
    POST ``{"policy": doc, "requests": [{"action", "resource", "context"}]}``."""
    body = _object(environ)
    policy, requests = body.get("policy"), body.get("requests")
    if not isinstance(policy, dict) or not isinstance(requests, list):
        raise BadRequest("want {\"policy\": <policy document>, \"requests\": [<authz entries>]}")
    try:
        evaluator = Policy(policy)
        decisions = [
            evaluator.evaluate(Request(str(r["action"]), str(r["resource"]), dict(r.get("context") or {})))
            for r in requests
        ]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadRequest(f"cannot evaluate: {exc!r}") from None
    return _json(
        200,
        {"decisions": [{"allowed": d.allowed, "statements": list(d.statements), "reason": d.reason} for d in decisions]},
    )


def _write_value(environ: dict[str, Any]) -> int | None:
    body = _object(environ)
    unknown = set(body) - {"value"}
    if unknown:
        raise BadRequest(f"unknown write key(s) {sorted(unknown)}; known: ['value']")
    value = body.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise BadRequest(f"value must be an integer >= 0 (or absent for counter+1), got {value!r}")
    return value


def _data(method: str, path: str, environ: dict[str, Any]) -> Response | None:
    """The data-on-volumes endpoints, or None if ``path`` is not one of them."""
    parts = path.split("/")  # ['', '_emulator', kind, id, verb]
    if len(parts) != 5 or not parts[3]:
        return None
    kind, ident, verb = parts[2], parts[3], parts[4]
    if (kind, verb, method) not in (
        ("volumes", "write", "POST"),
        ("instances", "write", "POST"),
        ("volumes", "data", "GET"),
        ("snapshots", "data", "GET"),
    ):
        return None
    value = _write_value(environ) if verb == "write" else None
    with state.LOCK:
        state.run_due()
        if kind == "snapshots":
            snapshot = data.find_snapshot(ident)
            if snapshot is None:
                return _json(404, {"error": f"unknown snapshot {ident!r}"})
            return _json(200, data.snapshot_data(snapshot))
        if kind == "instances":
            instance = data.find_instance(ident)
            if instance is None:
                return _json(404, {"error": f"unknown instance {ident!r}"})
            try:
                return _json(200, data.write_instance(instance, value))
            except data.Refused as exc:
                return _json(409, {"error": str(exc), "refused": True})
        volume = data.find_volume(ident)
        if volume is None:
            return _json(404, {"error": f"unknown volume {ident!r}"})
        if verb == "data":
            return _json(200, data.volume_data(volume))
        try:
            return _json(200, data.write_volume(volume, value))
        except data.Refused as exc:
            return _json(409, {"error": str(exc), "refused": True})


def _route(method: str, path: str, environ: dict[str, Any]) -> Response:
    if path == "/_emulator/health" and method == "GET":
        return _json(200, {"ok": True})
    if path == "/_emulator/reset" and method == "POST":
        reset_all()
        return _json(200, {"reset": True})
    if path == "/_emulator/config":
        if method == "POST":
            data = _object(environ)
            with state.LOCK:
                try:
                    state.SETTINGS.update(data)
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
        if method in ("GET", "POST"):
            return _json(200, state.SETTINGS.to_json())
    if path == "/_emulator/faults":
        if method == "POST":
            try:
                FAULTS.update(_body(environ), known_azs())
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        elif method == "DELETE":
            FAULTS.delete()
        if method in ("GET", "POST", "DELETE"):
            return _json(200, FAULTS.to_json())
    if path == "/_emulator/iam/evaluate" and method == "POST":
        return _iam_evaluate(environ)
    if path == "/_emulator/iam" and method in ("GET", "POST", "DELETE"):
        return _iam(method, environ)
    if path == "/_emulator/consistency" and method in ("GET", "POST", "DELETE"):
        return _consistency(method, environ)
    if path == "/_emulator/placement" and method in ("GET", "POST"):
        return _placement(method, environ)
    if path == "/_emulator/calls" and method in ("GET", "DELETE"):
        return _calls(method, environ)
    if path == "/_emulator/calls/summary" and method == "GET":
        return _json(200, CALLS.summary(**_call_filters(environ)))
    if path == "/_emulator/lifecycle" and method == "GET":
        with state.LOCK:
            return _json(200, {"actions": lifecycle.snapshot()})
    found = _data(method, path, environ)
    if found is not None:
        return found
    return _json(404, {"error": f"no control endpoint {method} {path}"})


def handle(environ: dict[str, Any]) -> Response:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "").rstrip("/")
    try:
        return _route(method, path, environ)
    except BadRequest as exc:
        return _json(400, {"error": str(exc)})
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return _json(500, {"error": f"internal error: {exc!r}"})

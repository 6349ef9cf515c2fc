"""Wire formats: recognise an AWS request and render AWS-shaped error responses.

Three protocols arrive on the one port:

* EC2 query protocol (form body, ``Action=``), errors as
  ``<Response><Errors><Error>…</Error></Errors><RequestID>…</RequestID></Response>``;
* Auto Scaling / SQS query protocol, errors as
  ``<ErrorResponse><Error><Type>…</Type>…</Error><RequestId>…</RequestId></ErrorResponse>``;
* SQS JSON protocol (``X-Amz-Target: AmazonSQS.Action``), errors as
  ``{"__type": "com.amazonaws.sqs#Code", "message": …}`` plus ``x-amzn-query-error``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import botocore.session

# API version string -> service, for unsigned query requests.
_VERSIONS = {"2016-11-15": "ec2", "2011-01-01": "autoscaling", "2012-11-05": "sqs"}
_SCOPE_RE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
MAX_LOGGED_VALUE = 200

_botocore = botocore.session.get_session()
_operations: dict[str, frozenset[str]] = {}


@dataclass
class AwsRequest:
    """What the middleware needs to know about one AWS API call."""

    service: str
    action: str | None
    region: str
    json_protocol: bool
    params: dict[str, Any] = field(default_factory=dict)
    # The SigV4 credential's access key id (None for an unsigned request).
    access_key: str | None = None

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"


def known_operation(service: str, action: str) -> bool:
    """Whether botocore's model of ``service`` has an operation named ``action``."""
    if service not in _operations:
        try:
            model = _botocore.get_service_model(service)
            _operations[service] = frozenset(model.operation_names)
        except Exception:  # unknown service: let moto decide
            return True
    return action in _operations[service]


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value, start=1):
            _flatten(v, f"{prefix}.{i}", out)
    else:
        out[prefix] = value


def _truncate(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v[:MAX_LOGGED_VALUE] + "…" if isinstance(v, str) and len(v) > MAX_LOGGED_VALUE else v)
        for k, v in params.items()
    }


def parse_request(environ: dict[str, Any], body: bytes) -> AwsRequest | None:
    """Recognise an AWS API call; ``None`` for anything else (e.g. ``/moto-api``)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    scope = _SCOPE_RE.search(auth)
    access_key = scope.group(1) if scope else None
    region = scope.group(2) if scope else "us-east-1"
    service = scope.group(3) if scope else None

    if target:
        prefix, _, action = target.partition(".")
        if service is None and prefix == "AmazonSQS":
            service = "sqs"
        if service is None:
            return None
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        params: dict[str, Any] = {}
        if isinstance(data, dict):
            _flatten(data, "", params)
        return AwsRequest(service, action or None, region, True, _truncate(params), access_key)

    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    ctype = environ.get("CONTENT_TYPE", "")
    if body and "json" not in ctype:
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    params = dict(pairs)
    action = params.pop("Action", None)
    version = params.pop("Version", None)
    if service is None:
        service = _VERSIONS.get(version or "")
    if service is None or (action is None and not scope):
        return None
    return AwsRequest(service, action, region, False, _truncate(params), access_key)


Response = tuple[int, list[tuple[str, str]], bytes]


def error_response(req: AwsRequest, status: int, code: str, message: str) -> Response:
    """An AWS-shaped error for ``req``'s service and protocol."""
    request_id = str(uuid.uuid4())
    sender = "Sender" if status < 500 else "Receiver"
    if req.json_protocol:
        body = json.dumps({"__type": f"com.amazonaws.{req.service}#{code}", "message": message})
        headers = [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-query-error", f"{_query_code(code)};{sender}"),
        ]
        return status, headers, body.encode()
    if req.service == "ec2":
        xml = (
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
    else:
        xml = (
            "<?xml version=\"1.0\"?>\n<ErrorResponse><Error>"
            f"<Type>{sender}</Type><Code>{escape(_query_code(code) if req.service == 'sqs' else code)}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], xml.encode()


def _query_code(code: str) -> str:
    """The SQS query-protocol code of a JSON-protocol error (``ThrottlingException`` -> ``RequestThrottled``)."""
    return {"ThrottlingException": "RequestThrottled"}.get(code, code)


def throttle_error(req: AwsRequest) -> Response:
    """AWS's answer to a throttled call: EC2 503 ``RequestLimitExceeded``, Auto Scaling 400
    ``Throttling``, SQS 400 ``ThrottlingException`` (JSON) / ``RequestThrottled`` (query), DynamoDB 400
    ``ThrottlingException``."""
    if req.service == "ec2":
        return error_response(req, 503, "RequestLimitExceeded", "Request limit exceeded.")
    if req.service == "sqs":
        return error_response(req, 400, "ThrottlingException" if req.json_protocol else "RequestThrottled", "Rate exceeded")
    if req.service == "dynamodb":
        return error_response(req, 400, "ThrottlingException", "Rate exceeded")
    return error_response(req, 400, "Throttling", "Rate exceeded")


def access_denied(req: AwsRequest, action: str, resource: str, reason: str) -> Response:
    """AWS's answer to a call IAM refuses: EC2 403 ``UnauthorizedOperation``, DynamoDB 400
    ``AccessDeniedException``, Auto Scaling and SQS 403 ``AccessDenied``."""
    who = f"arn:aws:sts::123456789012:assumed-role/ferry/{req.access_key}"
    message = f"User: {who} is not authorized to perform: {action} on resource: {resource} because {reason}"
    if req.service == "ec2":
        return error_response(req, 403, "UnauthorizedOperation", "You are not authorized to perform this operation. " + message)
    if req.service == "dynamodb":
        return error_response(req, 400, "AccessDeniedException", message)
    return error_response(req, 403, "AccessDenied", message)


def unknown_action(req: AwsRequest, detail: str | None = None) -> Response:
    if req.json_protocol:
        return error_response(req, 400, "UnknownOperationException", detail or f"Unknown operation {req.action}")
    message = detail or f"The action {req.action} is not valid for this web service."
    return error_response(req, 400, "InvalidAction", message)


def error_code_of(body: bytes) -> str | None:
    """Extract the AWS error code from an XML or JSON error body."""
    text = body[:4096].decode("utf-8", "replace")
    match = re.search(r"<Code>([^<]+)</Code>", text)
    if match:
        return match.group(1)
    match = re.search(r'"__type"\s*:\s*"(?:[^"#]*#)?([^"]+)"', text)
    return match.group(1) if match else None

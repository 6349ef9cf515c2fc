"""Opt-in IAM enforcement: calls signed by the configured principals (access key ids), and by the
credentials moto's STS issues for the configured roles, are authorized against ferry's shipped policies
before moto runs them, and refused the way AWS refuses them.

moto itself evaluates no IAM. With enforcement on, a call the policy does not allow answers EC2's
``UnauthorizedOperation`` (403), Auto Scaling's and SQS's ``AccessDenied`` (403) or DynamoDB's
``AccessDeniedException`` (400), and the call log records every authorization request of every
evaluated call (``authz``), allowed or not, so a test can prove the policy per call.

The policy set is given as JSON policy files and/or CloudFormation templates whose ``FerryRole`` policy
named ``ferry`` is extracted, with its ``Fn::Sub`` placeholders bound to the emulator's account and to
wildcards for names the stack would pin (see :data:`TEMPLATE_BINDINGS`). Each source is evaluated on
its own and a call must be allowed by every one, so the JSON and the template's copy are both proven.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .iam_context import ACCOUNT, requests_for
from .iam_policy import Policy

# What the template's placeholders become when its policy is evaluated here.
TEMPLATE_BINDINGS = {
    "${AWS::StackName}-ferry-retention": "ferry-retention",
    "${AWS::Partition}": "aws",
    "${AWS::Region}": "*",
    "${AWS::AccountId}": ACCOUNT,
    "${WorkloadGroupName}": "*",
    "${HookQueue.Arn}": f"arn:aws:sqs:*:{ACCOUNT}:ferry-hooks",
    "${LeaseTable.Arn}": f"arn:aws:dynamodb:*:{ACCOUNT}:table/ferry-leases",
    "${FerryRetentionRole.Arn}": f"arn:aws:iam::{ACCOUNT}:role/ferry-retention",
}


def _cfn_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: Any, suffix: str, node: Any) -> Any:
        name = "Ref" if suffix == "Ref" else "Fn::" + suffix
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", tag)
    return Loader


def _bind(value: Any, bindings: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            text = value["Fn::Sub"]
            for placeholder, bound in bindings.items():
                text = text.replace(placeholder, bound)
            if "${" in text:
                raise ValueError(f"unbound placeholder in {value['Fn::Sub']!r}")
            return text
        if set(value) == {"Ref"}:
            return _bound(bindings, str(value["Ref"]))
        if set(value) == {"Fn::GetAtt"}:
            return _bound(bindings, ".".join(value["Fn::GetAtt"]))
        return {k: _bind(v, bindings) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, bindings) for v in value]
    return value


def _bound(bindings: dict[str, str], name: str) -> str:
    try:
        return bindings["${" + name + "}"]
    except KeyError:
        raise ValueError(f"no binding for {name!r}") from None


def template_policy(
    path: Path, bindings: dict[str, str] | None = None, role: str = "FerryRole", name: str = "ferry"
) -> dict[str, Any]:
    """The policy document ``name`` of ``role`` in a CloudFormation template, its placeholders bound by
    :data:`TEMPLATE_BINDINGS` overridden by ``bindings`` (``{"WorkloadGroupName": "db"}``).
    Statements under ``Fn::If`` (optional extras such as a KMS key) are left out."""
    bound = dict(TEMPLATE_BINDINGS)
    bound.update({"${" + k.strip("${}") + "}": v for k, v in (bindings or {}).items()})
    import yaml

    template = yaml.load(path.read_text(), Loader=_cfn_loader())  # noqa: S506 - SafeLoader subclass
    policies = template["Resources"][role]["Properties"]["Policies"]
    docs = [p["PolicyDocument"] for p in policies if p.get("PolicyName") == name]
    if len(docs) != 1:
        raise ValueError(f"{path}: {role} has no single policy named {name!r}")
    statements = [s for s in docs[0]["Statement"] if not (isinstance(s, dict) and "Fn::If" in s)]
    return {"Version": "2012-10-17", "Statement": _bind(statements, bound)}


@dataclass
class Source:
    name: str
    policy: Policy


def load_sources(files: list[str], bindings: dict[str, str] | None = None) -> list[Source]:
    """Policy sources from paths: ``*.json`` is a policy document, ``*.yaml``/``*.yml`` a template (its
    placeholders bound as in :func:`template_policy`), whose role and policy ``#Role/Policy`` names
    (default ``#FerryRole/ferry``)."""
    out = []
    for f in files:
        spec, _, inner = f.partition("#")
        path = Path(spec)
        if path.suffix in (".yaml", ".yml"):
            role, _, name = (inner or "FerryRole/ferry").partition("/")
            doc = template_policy(path, bindings, role=role, name=name or "ferry")
        else:
            doc = json.loads(path.read_text())
        out.append(Source(path.name + (f"#{inner}" if inner else ""), Policy(doc)))
    return out


def _assumed_role_name(access_key: str | None) -> str | None:
    """The role name of an access key moto's STS issued (AssumeRole), if it is one."""
    if not access_key:
        return None
    from moto.sts.models import sts_backends

    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(access_key)
    return assumed.role_arn.rsplit("/", 1)[-1] if assumed else None


class Enforcer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Source] = []
        self._principals: frozenset[str] = frozenset()
        self._files: list[str] = []
        # Role name -> its policy sources, for the credentials moto's STS issues for that role.
        self._roles: dict[str, list[Source]] = {}
        self._role_files: dict[str, list[str]] = {}

    def configure(
        self,
        files: list[str],
        principals: list[str],
        bindings: dict[str, str] | None = None,
        roles: dict[str, list[str]] | None = None,
    ) -> None:
        sources = load_sources(files, bindings)
        role_sources = {name: load_sources(fs, bindings) for name, fs in (roles or {}).items()}
        with self._lock:
            self._sources, self._files = sources, list(files)
            self._principals = frozenset(principals)
            self._roles, self._role_files = role_sources, {k: list(v) for k, v in (roles or {}).items()}

    def configure_documents(self, documents: dict[str, dict[str, Any]], principals: list[str]) -> None:
        sources = [Source(name, Policy(doc)) for name, doc in documents.items()]
        with self._lock:
            self._sources, self._files = sources, sorted(documents)
            self._principals = frozenset(principals)

    def disable(self) -> None:
        with self._lock:
            self._sources, self._files, self._principals = [], [], frozenset()
            self._roles, self._role_files = {}, {}

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enabled": bool(self._sources),
                "sources": self._files,
                "principals": sorted(self._principals),
                "roles": self._role_files,
            }

    def sources_for(self, access_key: str | None) -> list[Source] | None:
        """The policy sources governing calls signed with ``access_key``; ``None`` when none do."""
        with self._lock:
            sources, principals, roles = list(self._sources), self._principals, dict(self._roles)
        if not sources:
            return None
        if access_key in principals:
            return sources
        # Credentials of a governed role (ferryd's retention role), assumed through moto's STS.
        role = _assumed_role_name(access_key) if roles else None
        return roles.get(role) if role else None

    @staticmethod
    def authorize(
        sources: list[Source], service: str, action: str, region: str, params: dict[str, Any]
    ) -> tuple[bool, list[dict[str, Any]]]:
        """(allowed, one record per request and source) of one call; needs moto's state (``state.LOCK``)."""
        records, allowed = [], True
        for req in requests_for(service, action, region, params):
            for src in sources:
                decision = src.policy.evaluate(req)
                allowed = allowed and decision.allowed
                records.append(
                    {
                        "action": req.action,
                        "resource": req.resource,
                        "context": req.context,
                        "source": src.name,
                        "allowed": decision.allowed,
                        "statements": list(decision.statements),
                        "reason": decision.reason,
                    }
                )
        return allowed, records


ENFORCER = Enforcer()

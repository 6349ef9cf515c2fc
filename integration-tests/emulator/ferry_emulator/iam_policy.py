"""A small IAM policy evaluator: identity policies with Allow/Deny statements, wildcard actions and
resources, and exactly the condition operators ferry's shipped policy uses.

It follows AWS's documented evaluation logic for one identity policy set: an explicit ``Deny`` wins, then
any matching ``Allow``, else the implicit deny. A statement matches when its action, its resource and
every condition block match; inside a block every key must match (AND), and any of a key's values may
match (OR). Condition keys are case-insensitive, string values are case-sensitive (``StringEquals``) and
``*``/``?`` wildcards work as in ``StringLike``.

Supported operators: ``StringEquals``, ``StringNotEquals``, ``StringLike``, ``StringNotLike``,
``ArnLike``/``ArnEquals``, ``Null``, ``Bool``, the ``...IfExists`` forms of the string operators, and the
``ForAllValues:``/``ForAnyValue:`` set qualifiers on the string operators. An operator outside that list
raises :class:`UnsupportedPolicy` instead of guessing, so a policy change that needs more of IAM fails
loudly here rather than passing by accident.

References: "Policy evaluation logic" and "IAM JSON policy elements: Condition operators" in the IAM
User Guide; "Single-valued vs. multivalued context keys" for the set qualifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Context = dict[str, Any]  # condition key (any case) -> str, or list[str] for multivalued keys


class UnsupportedPolicy(ValueError):
    """The policy uses an element or operator this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorization request: an action on one resource ARN, with its request context."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Sids of the statements that decided it (the Deny, or every matching Allow).
    statements: tuple[str, ...]
    reason: str


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _action_matches(patterns: list[str], action: str) -> bool:
    # Action names are case-insensitive in IAM.
    return any(_like(p, action, case_sensitive=False) for p in patterns)


def _resource_matches(patterns: list[str], resource: str) -> bool:
    return any(p == "*" or _like(p, resource) for p in patterns)


def _lookup(ctx: Context, key: str) -> list[str] | None:
    lowered = key.lower()
    for k, v in ctx.items():
        if k.lower() == lowered:
            return [str(x) for x in _as_list(v)]
    return None


_STRING_OPS = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": lambda want, got: _like(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": lambda want, got: _like(want, got),
}
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike"}


def _string_condition(op: str, wants: list[str], got: list[str] | None) -> bool:
    qualifier, _, base = op.rpartition(":")
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    negated = base in _NEGATED
    compare = _STRING_OPS.get(_NEGATED.get(base, base))
    if compare is None:
        raise UnsupportedPolicy(f"condition operator {op!r} is not supported")
    if got is None:
        if qualifier == "ForAllValues":
            return True  # vacuously true: nothing in the request to disallow
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated

    def one(value: str) -> bool:
        hit = any(compare(w, value) for w in wants)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in got)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in got)
    if qualifier:
        raise UnsupportedPolicy(f"set qualifier {qualifier!r} is not supported")
    if len(got) != 1:
        raise UnsupportedPolicy(f"multivalued key used with single-valued operator {op!r}")
    return one(got[0])


def _condition_matches(op: str, key: str, wants: list[Any], ctx: Context) -> bool:
    got = _lookup(ctx, key)
    if op == "Null":
        absent = got is None
        return any(str(w).lower() == ("true" if absent else "false") for w in wants)
    if op == "Bool":
        return got is not None and any(str(w).lower() == g.lower() for w in wants for g in got)
    return _string_condition(op, [str(w) for w in wants], got)


def _statement_matches(st: dict[str, Any], req: Request) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in st:
            raise UnsupportedPolicy(f"statement {st.get('Sid')!r} uses {unsupported}")
    if not _action_matches(_as_list(st.get("Action", [])), req.action):
        return False
    if not _resource_matches(_as_list(st.get("Resource", [])), req.resource):
        return False
    for op, block in (st.get("Condition") or {}).items():
        for key, wants in block.items():
            if not _condition_matches(op, key, _as_list(wants), req.context):
                return False
    return True


class Policy:
    """An identity policy document (or several, evaluated as one set)."""

    def __init__(self, *documents: dict[str, Any]) -> None:
        self.statements: list[dict[str, Any]] = []
        for doc in documents:
            self.statements.extend(_as_list(doc.get("Statement", [])))
        for st in self.statements:
            if st.get("Effect") not in ("Allow", "Deny"):
                raise UnsupportedPolicy(f"statement {st.get('Sid')!r} has Effect {st.get('Effect')!r}")

    def evaluate(self, req: Request) -> Decision:
        matched = [st for st in self.statements if _statement_matches(st, req)]
        denies = [st.get("Sid", "?") for st in matched if st["Effect"] == "Deny"]
        if denies:
            return Decision(False, tuple(denies), "explicit deny")
        allows = [st.get("Sid", "?") for st in matched if st["Effect"] == "Allow"]
        if allows:
            return Decision(True, tuple(allows), "allowed")
        return Decision(False, (), "no statement allows it (implicit deny)")


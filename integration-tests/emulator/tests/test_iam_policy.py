"""The IAM evaluator on its own: AWS's evaluation order and each condition operator it supports."""

from __future__ import annotations

import pytest

from ferry_emulator.iam_policy import Policy, Request, UnsupportedPolicy


def allow(sid: str, action: str, resource: str = "*", condition: dict | None = None) -> dict:
    st = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


def policy(*statements: dict) -> Policy:
    return Policy({"Version": "2012-10-17", "Statement": list(statements)})


def test_implicit_deny_then_allow_then_explicit_deny_wins() -> None:
    req = Request("ec2:StopInstances", "arn:aws:ec2:us-east-1:1:instance/i-1")
    assert not policy().evaluate(req).allowed
    assert policy(allow("A", "ec2:Stop*", "arn:aws:ec2:*:*:instance/*")).evaluate(req).statements == ("A",)
    deny = {"Sid": "D", "Effect": "Deny", "Action": "ec2:*", "Resource": "*"}
    decision = policy(allow("A", "ec2:StopInstances"), deny).evaluate(req)
    assert (decision.allowed, decision.statements, decision.reason) == (False, ("D",), "explicit deny")


def test_actions_match_without_case_resources_with_case() -> None:
    p = policy(allow("A", "EC2:stopinstances", "arn:aws:ec2:*:*:instance/i-A*"))
    assert p.evaluate(Request("ec2:StopInstances", "arn:aws:ec2:r:1:instance/i-Ab")).allowed
    assert not p.evaluate(Request("ec2:StopInstances", "arn:aws:ec2:r:1:instance/i-ab")).allowed
    assert not p.evaluate(Request("ec2:StartInstances", "arn:aws:ec2:r:1:instance/i-Ab")).allowed


def test_string_equals_and_like_need_the_key_and_compare_values_with_case() -> None:
    p = policy(allow("A", "ec2:CreateTags", condition={"StringEquals": {"aws:ResourceTag/ferry:group": "db"}}))
    ok = Request("ec2:CreateTags", "x", {"AWS:ResourceTag/ferry:group": "db"})  # keys: any case
    assert p.evaluate(ok).allowed
    assert not p.evaluate(Request("ec2:CreateTags", "x", {"aws:ResourceTag/ferry:group": "DB"})).allowed
    assert not p.evaluate(Request("ec2:CreateTags", "x", {})).allowed
    like = policy(allow("L", "ec2:CreateTags", condition={"StringLike": {"aws:ResourceTag/ferry:group": "*"}}))
    assert like.evaluate(ok).allowed
    assert not like.evaluate(Request("ec2:CreateTags", "x", {})).allowed


def test_every_key_of_a_block_and_any_value_of_a_key() -> None:
    cond = {"StringEquals": {"k1": ["a", "b"], "k2": "c"}}
    p = policy(allow("A", "s:A", condition=cond))
    assert p.evaluate(Request("s:A", "x", {"k1": "b", "k2": "c"})).allowed
    assert not p.evaluate(Request("s:A", "x", {"k1": "b", "k2": "d"})).allowed
    assert not p.evaluate(Request("s:A", "x", {"k1": "z", "k2": "c"})).allowed


def test_for_all_values_is_true_without_the_key_and_checks_every_value() -> None:
    p = policy(allow("A", "s:A", condition={"ForAllValues:StringLike": {"aws:TagKeys": ["ferry:*", "Name"]}}))
    assert p.evaluate(Request("s:A", "x", {"aws:TagKeys": ["Name", "ferry:slot"]})).allowed
    assert p.evaluate(Request("s:A", "x", {})).allowed  # no tags in the request: vacuously true
    assert not p.evaluate(Request("s:A", "x", {"aws:TagKeys": ["Name", "owner"]})).allowed


def test_for_any_value_needs_one_match() -> None:
    p = policy(allow("A", "s:A", condition={"ForAnyValue:StringEquals": {"aws:TagKeys": "ferry:group"}}))
    assert p.evaluate(Request("s:A", "x", {"aws:TagKeys": ["Name", "ferry:group"]})).allowed
    assert not p.evaluate(Request("s:A", "x", {"aws:TagKeys": ["Name"]})).allowed
    assert not p.evaluate(Request("s:A", "x", {})).allowed


def test_null_tests_presence() -> None:
    absent = policy(allow("A", "s:A", condition={"Null": {"ec2:InstanceID": "true"}}))
    present = policy(allow("A", "s:A", condition={"Null": {"ec2:InstanceID": "false"}}))
    with_key = Request("s:A", "x", {"ec2:InstanceID": "i-1"})
    without = Request("s:A", "x", {})
    assert absent.evaluate(without).allowed and not absent.evaluate(with_key).allowed
    assert present.evaluate(with_key).allowed and not present.evaluate(without).allowed


def test_negated_and_if_exists_operators() -> None:
    p = policy(allow("A", "s:A", condition={"StringNotEquals": {"k": "bad"}}))
    assert p.evaluate(Request("s:A", "x", {"k": "good"})).allowed
    assert not p.evaluate(Request("s:A", "x", {"k": "bad"})).allowed
    assert p.evaluate(Request("s:A", "x", {})).allowed  # a missing key is "not equal"
    q = policy(allow("A", "s:A", condition={"StringEqualsIfExists": {"k": "db"}}))
    assert q.evaluate(Request("s:A", "x", {})).allowed
    assert q.evaluate(Request("s:A", "x", {"k": "db"})).allowed
    assert not q.evaluate(Request("s:A", "x", {"k": "other"})).allowed


def test_what_it_does_not_implement_fails_loudly() -> None:
    numeric = policy(allow("A", "s:A", condition={"NumericLessThan": {"k": "3"}}))
    with pytest.raises(UnsupportedPolicy, match="NumericLessThan"):
        numeric.evaluate(Request("s:A", "x", {"k": "1"}))
    with pytest.raises(UnsupportedPolicy, match="NotAction"):
        Policy({"Statement": [{"Effect": "Allow", "NotAction": "s:A", "Resource": "*"}]}).evaluate(
            Request("s:A", "x")
        )
    with pytest.raises(UnsupportedPolicy, match="Effect"):
        Policy({"Statement": [{"Effect": "Maybe", "Action": "s:A", "Resource": "*"}]})

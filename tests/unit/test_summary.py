"""One Decision -> DecisionSummary (summary.py), read by Envoy's dynamic metadata, the
decision log line and `extauthz check`; the response facts the CheckResponse is built from
and remembered by (envoy_api.ResponseFacts)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.key_store import KeyStore
from extauthz.authn.result import ALWAYS, AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import AuthzVerdict, PolicyMatch
from extauthz.commands.check import explain
from extauthz.decision import Decision, Verdict, internal_error, refused
from extauthz.server.envoy_api import (
    ResponseFacts,
    Responses,
    build_response,
    dynamic_metadata,
    response_facts,
)
from extauthz.server.logs import DecisionLogger
from extauthz.summary import DecisionSummary, summarize
from tests.support.config import snapshot_from

to_response = Responses(payload_metadata=True).get  # one service's, with --payload-metadata

ALICE = AuthnResult(
    JwtStatus.Ok, principal="https://i.example/alice", issuer="https://i.example",
    subject="alice", kid="k1", claims=MappingProxyType({"sub": "alice", "groups": ["dev"]}),
    headers_to_remove=("authorization",), headers_to_set=(("x-sub", "alice"),),
    params_to_remove=("access_token",),
    payloads=MappingProxyType({"https://i.example": {"sub": "alice"}}), validity=ALWAYS,
)  # fmt: skip
AUDIT = PolicyMatch("foo/audit", "AUDIT", 0)
DRY = PolicyMatch("foo/dry", "DENY", 2)
ALLOWED = Decision(
    Verdict.ALLOW, 200, "allowed by ALLOW policy foo/allow", ALICE,
    AuthzVerdict(True, "allowed by ALLOW policy foo/allow", "foo/allow", 1, (AUDIT,), (DRY,)),
    generation_number=7,
)  # fmt: skip
DENIED = Decision(
    Verdict.DENY, 403, "denied by DENY policy foo/deny", AuthnResult(JwtStatus.Ok, validity=ALWAYS),
    AuthzVerdict(False, "denied by DENY policy foo/deny", "foo/deny", 0,
                 detail="rules[0]: to[0].operation.paths matched"),
    body="RBAC: access denied", generation_number=7,
)  # fmt: skip
EXPIRED = Decision(
    Verdict.UNAUTHENTICATED, 401, "JwtExpired: Jwt is expired",
    AuthnResult(JwtStatus.JwtExpired, issuer="https://i.example", subject="bob", kid="k1"),
    body="Jwt is expired",
    response_headers=(("www-authenticate", 'Bearer realm="http://a/p", error="invalid_token"'),),
    generation_number=7,
)  # fmt: skip


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        pytest.param(ALLOWED, DecisionSummary(
            Verdict.ALLOW, 200, "allowed by ALLOW policy foo/allow", JwtStatus.Ok,
            "https://i.example/alice", "https://i.example", "alice", "k1", "foo/allow", 1, "",
            ("AUDIT foo/audit rules[0]",), ("DENY foo/dry rules[2]",), 7), id="allowed-with-audit-and-dry-run"),
        pytest.param(DENIED, DecisionSummary(
            Verdict.DENY, 403, "denied by DENY policy foo/deny", JwtStatus.Ok, "", "", "", "",
            "foo/deny", 0, "rules[0]: to[0].operation.paths matched", (), (), 7), id="denied-by-policy"),
        pytest.param(EXPIRED, DecisionSummary(
            Verdict.UNAUTHENTICATED, 401, "JwtExpired: Jwt is expired", JwtStatus.JwtExpired, "",
            "https://i.example", "bob", "k1", "", None, "", (), (), 7), id="unauthenticated-no-policy-ran"),
        pytest.param(internal_error("KeyError", 3), DecisionSummary(
            Verdict.DENY, 403, "internal error: KeyError", JwtStatus.Ok, "", "", "", "", "", None,
            "", (), (), 3), id="internal-error"),
        pytest.param(refused("labels too long"), DecisionSummary(
            Verdict.DENY, 403, "labels too long", JwtStatus.Ok, "", "", "", "", "", None, "", (),
            (), 0), id="refused"),
    ],
)  # fmt: skip
def test_summarize(decision: Decision, expected: DecisionSummary) -> None:
    assert summarize(decision) == expected


# --- the reports read the one summary, each in its own (pinned) words -------------------


def test_dynamic_metadata_keys_and_order() -> None:
    assert list(dynamic_metadata(ALLOWED).items()) == [
        ("decision", "allow"), ("reason", "allowed by ALLOW policy foo/allow"),
        ("generation", 7), ("request_principal", "https://i.example/alice"),
        ("policy", "foo/allow"), ("rule", 1), ("audit", ["AUDIT foo/audit rules[0]"]),
        ("dry_run", ["DENY foo/dry rules[2]"]),
    ]  # fmt: skip
    assert dynamic_metadata(EXPIRED) == {
        "decision": "unauthenticated", "reason": "JwtExpired: Jwt is expired", "generation": 7,
    }  # fmt: skip


def test_decision_log_line_is_unchanged() -> None:
    logger = DecisionLogger(claims=("groups",))
    fields = ("r1", "GET", "a.example", "/p", "10.0.0.1")
    assert logger.line(1.5, fields, ALLOWED, 0.000012) == (
        '{"time":1.500,"request_id":"r1","method":"GET","host":"a.example","path":"/p",'
        '"source_ip":"10.0.0.1","decision":"allow","status":200,'
        '"reason":"allowed by ALLOW policy foo/allow","jwt_status":"Ok","policy":"foo/allow",'
        '"rule":1,"detail":"","issuer":"https://i.example","subject":"alice","kid":"k1",'
        '"generation":7,"audit":["AUDIT foo/audit rules[0]"],"dry_run":["DENY foo/dry rules[2]"],'
        '"claims":{"groups":["dev"]},"latency_us":12}'
    )


@pytest.mark.parametrize("decision", [ALLOWED, DENIED, EXPIRED], ids=["allow", "deny", "401"])
def test_metadata_and_log_line_say_the_same(decision: Decision) -> None:
    summary = summarize(decision)
    metadata = dynamic_metadata(decision)
    logged = DecisionLogger().record(0.0, ("", "", "", "", ""), decision, 0.0)
    assert metadata["decision"] == logged["decision"] == summary.verdict.value
    assert metadata["reason"] == logged["reason"] == summary.reason
    assert metadata["generation"] == logged["generation"] == summary.generation
    assert metadata.get("policy", "") == logged["policy"] == summary.policy
    assert metadata.get("audit", []) == logged.get("audit", []) == list(summary.audits)
    assert metadata.get("dry_run", []) == logged.get("dry_run", []) == list(summary.dry_run)


def test_log_line_cuts_token_fields_the_summary_keeps_whole() -> None:
    long = "i" * 1000
    decision = replace(EXPIRED, authn=replace(EXPIRED.authn, issuer=long))
    assert summarize(decision).issuer == long
    logged = DecisionLogger().record(0.0, ("", "", "", "", ""), decision, 0.0)
    assert logged["issuer"] == long[:256]


# --- the response is made of its facts, and remembered by them ---------------------------

Change = Callable[[Decision], Decision]


def _authn(**changes: Any) -> Change:
    return lambda decision: replace(decision, authn=replace(decision.authn, **changes))


def _authz(**changes: Any) -> Change:
    def change(decision: Decision) -> Decision:
        assert decision.authz is not None
        return replace(decision, authz=replace(decision.authz, **changes))

    return change


# For each fact a response is made of: a decision that differs in it alone.
FACTS: dict[str, tuple[Decision, Change]] = {
    "verdict": (DENIED, lambda d: replace(d, verdict=Verdict.ALLOW)),
    "status": (DENIED, lambda d: replace(d, http_status=418)),
    "reason": (ALLOWED, lambda d: replace(d, reason="another")),
    "principal": (ALLOWED, _authn(principal="https://i.example/bob")),
    "policy": (ALLOWED, _authz(policy="foo/other")),
    "rule": (ALLOWED, _authz(rule=2)),
    "detail": (DENIED, _authz(detail="rules[0]: another")),
    "audits": (ALLOWED, _authz(audits=())),
    "dry_run": (ALLOWED, _authz(dry_run=(AUDIT, DRY))),
    "generation": (ALLOWED, lambda d: replace(d, generation_number=8)),
    "body": (DENIED, lambda d: replace(d, body="no")),
    "response_headers": (DENIED, lambda d: replace(d, response_headers=(("x-why", "no"),))),
    "headers_to_set": (ALLOWED, _authn(headers_to_set=(("x-sub", "bob"),))),
    "headers_to_remove": (ALLOWED, _authn(headers_to_remove=())),
    "params_to_remove": (ALLOWED, _authn(params_to_remove=("token",))),
    "payloads": (ALLOWED, _authn(payloads=MappingProxyType({"https://i.example": {"sub": "b"}}))),
}


def _wire(response: object) -> bytes:
    return response.SerializeToString(deterministic=True)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize(("base", "change"), FACTS.values(), ids=FACTS.keys())
def test_each_fact_reaches_the_response_and_its_key(base: Decision, change: Change) -> None:
    """A fact that differs gives another key and another response; so no fact is missing
    from the key, and none is carried without reaching the response."""
    other = change(base)
    assert response_facts(other, True) != response_facts(base, True)
    assert _wire(build_response(other, True)) != _wire(build_response(base, True))
    assert _wire(to_response(other)) == _wire(build_response(other, True))
    assert to_response(other) is not to_response(base)


def test_every_fact_that_can_differ_is_listed() -> None:
    summary_facts = set(DecisionSummary._fields) - {"jwt_status", "issuer", "subject", "kid"}
    response_only = set(ResponseFacts._fields) - {"summary"}
    assert set(FACTS) == summary_facts | response_only


def test_equal_facts_find_the_response_already_built() -> None:
    again = replace(ALLOWED, authn=replace(ALICE))  # equal values, the same payload objects
    assert to_response(again) is to_response(ALLOWED)


def test_payloads_are_compared_by_identity() -> None:
    """Equal JSON in another object is another key (comparing payloads by value would cost
    more than building); the response built is the same."""
    copy = MappingProxyType({"https://i.example": {"sub": "alice"}})
    other = replace(ALLOWED, authn=replace(ALICE, payloads=copy))
    assert response_facts(other, True) != response_facts(ALLOWED, True)
    assert _wire(to_response(other)) == _wire(to_response(ALLOWED))


def test_check_report_reads_the_summary_and_the_response_facts() -> None:
    """`extauthz check --json` says what the summary and the response facts say."""
    report = json.loads(
        json.dumps(explain(RequestAttributes(), snapshot_from(""), ALLOWED, KeyStore()))
    )
    assert (report["verdict"], report["status"], report["reason"]) == (
        "allow", 200, "allowed by ALLOW policy foo/allow",
    )  # fmt: skip
    assert (report["policy"], report["rule"], report["detail"]) == ("foo/allow", 1, "")
    assert report["audits"] == ["AUDIT foo/audit rules[0]"]
    assert report["dry_run"] == ["DENY foo/dry rules[2]"]
    assert report["jwt"]["principal"] == "https://i.example/alice"
    assert report["upstream"] == {
        "headers_to_remove": ["authorization"],
        "headers_to_set": {"x-sub": "alice"},
        "params_to_remove": ["access_token"],
    }

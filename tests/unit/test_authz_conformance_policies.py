"""Actions, dry-run, rule shapes, pseudo-header `when` keys and JWT claims as Envoy's RBAC
filters decide them. Every row was measured against Envoy 1.40 (native RBAC + jwt_authn,
tests/conformance/harness.py)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
import yaml

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import ANONYMOUS, AuthnResult
from extauthz.authz.evaluate import evaluate
from tests.support.config import snapshot_from
from tests.unit.authz_policy import is_allowed, policy_yaml, verified

REQUESTS: dict[str, RequestAttributes] = {
    "GET /": RequestAttributes(method="GET", host="example.com", path="/"),
    "GET /admin": RequestAttributes(method="GET", host="example.com", path="/admin"),
    "POST /admin?x=1": RequestAttributes(
        method="POST", host="example.com", path="/admin", query="x=1",
        headers=MappingProxyType({":path": "/admin?x=1", ":method": "POST"}),
    ),
    "GET /a host x:81": RequestAttributes(
        method="GET", host="x:81", path="/a", headers=MappingProxyType({":authority": "x:81"})
    ),
}  # fmt: skip
ALL = tuple(REQUESTS)
DRY_RUN = {"istio.io/dry-run": "true"}


def _to(**operation: list[str]) -> list[dict[str, Any]]:
    return [{"to": [{"operation": operation}]}]


def _when(key: str, *values: str) -> list[dict[str, Any]]:
    return [{"when": [{"key": key, "values": list(values)}]}]


Policy = tuple[str, list[dict[str, Any]] | None, dict[str, str] | None]

# (name, policies as (action, rules, annotations), the requests Envoy 1.40 lets through)
MEASURED: list[tuple[str, list[Policy], tuple[str, ...]]] = [
    ("allow-without-rules-denies-all", [("ALLOW", None, None)], ()),
    ("allow-empty-rules-denies-all", [("ALLOW", [], None)], ()),
    ("allow-empty-rule-allows-all", [("ALLOW", [{}], None)], ALL),
    ("deny-empty-rule-denies-all", [("DENY", [{}], None)], ()),
    ("deny-without-rules-denies-nothing", [("DENY", None, None)], ALL),
    ("audit-decides-nothing", [("AUDIT", [{}], None)], ALL),
    ("audit-beside-allow", [("AUDIT", [{}], None), ("ALLOW", _to(paths=["/admin"]), None)], ("GET /admin", "POST /admin?x=1")),
    ("dry-run-deny-decides-nothing", [("DENY", [{}], DRY_RUN)], ALL),
    ("dry-run-allow-decides-nothing", [("ALLOW", _to(paths=["/admin"]), DRY_RUN)], ALL),
    ("dry-run-allow-beside-allow", [("ALLOW", _to(paths=["/admin"]), DRY_RUN), ("ALLOW", _to(paths=["/"]), None)], ("GET /",)),
    ("dry-run-deny-without-rules", [("DENY", None, DRY_RUN)], ALL),
    ("dry-run-allow-without-rules", [("ALLOW", None, DRY_RUN)], ALL),
    ("empty-operation-matches-all", [("ALLOW", [{"to": [{"operation": {}}]}], None)], ALL),
    ("empty-source-matches-all", [("ALLOW", [{"from": [{"source": {}}]}], None)], ALL),
    ("empty-from-and-to-match-all", [("ALLOW", [{"from": [], "to": []}], None)], ALL),
    ("deny-before-allow", [("DENY", _to(paths=["/admin"]), None), ("ALLOW", [{}], None)], ("GET /", "GET /a host x:81")),
    ("allow-policies-are-ored", [("ALLOW", _to(paths=["/admin"]), None), ("ALLOW", _to(methods=["POST"]), None)], ("GET /admin", "POST /admin?x=1")),
    ("path-with-query-never-matches", [("ALLOW", _to(paths=["/admin?x=1"]), None)], ()),
    ("header-authority", [("ALLOW", _when("request.headers[:authority]", "x:81"), None)], ("GET /a host x:81",)),
    # Envoy reads the `host` header as :authority (ext_authz sends only :authority).
    ("header-host-is-authority", [("ALLOW", _when("request.headers[host]", "x:81"), None)], ("GET /a host x:81",)),
    ("header-path-keeps-query", [("ALLOW", _when("request.headers[:path]", "/admin?x=1"), None)], ("POST /admin?x=1",)),
    ("header-method", [("ALLOW", _when("request.headers[:method]", "POST"), None)], ("POST /admin?x=1",)),
]  # fmt: skip


def _documents(policies: list[Policy]) -> str:
    texts = []
    for number, (action, rules, notes) in enumerate(policies):
        document = yaml.safe_load(policy_yaml(action, rules, f"p{number}"))
        if notes:
            document["metadata"]["annotations"] = notes
        texts.append(yaml.safe_dump(document, sort_keys=False))
    return "---\n" + "---\n".join(texts)


@pytest.mark.parametrize(
    ("policies", "request_name", "allowed"),
    [
        pytest.param(policies, request_name, request_name in allowed, id=f"{name}-{request_name}")
        for name, policies, allowed in MEASURED
        for request_name in REQUESTS
    ],
)
def test_policies(policies: list[Policy], request_name: str, allowed: bool) -> None:
    snapshot = snapshot_from(_documents(policies))
    verdict = evaluate(snapshot.policies, REQUESTS[request_name], ANONYMOUS)
    assert verdict.is_allowed is allowed


BASE = {"iss": "iss-a", "sub": "alice"}
TOKENS: dict[str, AuthnResult] = {
    "none": ANONYMOUS,
    "plain": verified(BASE),
    "groups [dev,ops]": verified({**BASE, "groups": ["dev", "ops"]}),
    "groups 'dev'": verified({**BASE, "groups": "dev"}),
    "groups []": verified({**BASE, "groups": []}),
    "groups ''": verified({**BASE, "groups": ""}),
    "groups [1,'dev']": verified({**BASE, "groups": [1, "dev"]}),
    "groups [['dev']]": verified({**BASE, "groups": [["dev"]]}),
    "groups 'dev ops'": verified({**BASE, "groups": "dev ops"}),
    "level 3": verified({**BASE, "level": 3}),
    "level '3'": verified({**BASE, "level": "3"}),
    "admin true": verified({**BASE, "admin": True}),
    "admin 'true'": verified({**BASE, "admin": "true"}),
    "org {team:blue}": verified({**BASE, "org": {"team": "blue"}}),
    "org {team:[blue]}": verified({**BASE, "org": {"team": ["blue"]}}),
    "org 'x'": verified({**BASE, "org": "x"}),
    "dotted a.b": verified({**BASE, "a.b": "x"}),
    "a {b: x}": verified({**BASE, "a": {"b": "x"}}),
    "aud 'aud-1'": verified({**BASE, "aud": "aud-1"}),
    "aud [aud-1,aud-2]": verified({**BASE, "aud": ["aud-1", "aud-2"]}),
    "azp 'cli'": verified({**BASE, "azp": "cli"}),
    "azp ['cli']": verified({**BASE, "azp": ["cli"]}),
}
# (key, value, the tokens Envoy 1.40 lets through): strings, and strings inside a list, match;
# numbers, booleans, nested lists and empty strings never do; notValues is the complement.
MEASURED_CLAIMS: list[tuple[str, str, tuple[str, ...]]] = [
    ("request.auth.claims[groups]", "dev", ("groups [dev,ops]", "groups 'dev'", "groups [1,'dev']")),
    ("request.auth.claims[groups]", "*", ("groups [dev,ops]", "groups 'dev'", "groups [1,'dev']", "groups 'dev ops'")),
    ("request.auth.claims[groups]", "d*", ("groups [dev,ops]", "groups 'dev'", "groups [1,'dev']", "groups 'dev ops'")),
    ("request.auth.claims[groups]", "dev ops", ("groups 'dev ops'",)),
    ("request.auth.claims[groups]", "1", ()),
    ("request.auth.claims[level]", "3", ("level '3'",)),
    ("request.auth.claims[level]", "*", ("level '3'",)),
    ("request.auth.claims[admin]", "true", ("admin 'true'",)),
    ("request.auth.claims[org][team]", "blue", ("org {team:blue}", "org {team:[blue]}")),
    ("request.auth.claims[org]", "*", ("org 'x'",)),
    ("request.auth.claims[a.b]", "x", ("dotted a.b",)),
    ("request.auth.claims[a][b]", "x", ("a {b: x}",)),
    ("request.auth.audiences", "aud-*", ("aud 'aud-1'", "aud [aud-1,aud-2]")),
    ("request.auth.presenter", "cli", ("azp 'cli'", "azp ['cli']")),
    ("request.auth.claims[iss]", "iss-a", tuple(t for t in TOKENS if t != "none")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "token", "allowed"),
    [
        pytest.param(key, value, token, token in allowed, id=f"{key}={value}-{token}")
        for key, value, allowed in MEASURED_CLAIMS
        for token in TOKENS
    ],
)
def test_claims(key: str, value: str, token: str, allowed: bool) -> None:
    authn = TOKENS[token]
    for values, expected in (("values", allowed), ("notValues", not allowed)):
        rules = [{"when": [{"key": key, values: [value]}]}]
        assert is_allowed("ALLOW", rules, RequestAttributes(), authn) is expected

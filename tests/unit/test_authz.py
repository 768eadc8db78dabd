"""AuthorizationPolicy semantics: one table row = one request and the expected verdict."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import ANONYMOUS, AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import evaluate
from extauthz.authz.match import StringMatcher
from extauthz.config.parse import ConfigError
from tests.support.config import snapshot_from

ALICE = AuthnResult(
    JwtStatus.Ok,
    principal="https://idp/alice",
    claims=MappingProxyType({"iss": "https://idp", "sub": "alice", "groups": ["dev", "ops"], "org": {"team": "blue"}, "aud": "api"}),
)  # fmt: skip


def _policy(action: str, rules: str, name: str = "p") -> str:
    return (
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: foo}}\nspec:\n  action: {action}\n{rules}"
    )


def _allowed(yaml_text: str, attrs: RequestAttributes, authn: AuthnResult = ANONYMOUS) -> bool:
    return evaluate(snapshot_from(yaml_text).policies, attrs, authn).is_allowed


SEED = _policy(
    "DENY",
    "  rules:\n  - from:\n    - source: {notRequestPrincipals: ['*']}\n"
    "    to:\n    - operation: {notPaths: [/productpage]}\n",
)


@pytest.mark.parametrize(
    ("path", "authn", "allowed"),
    [
        pytest.param("/productpage", ANONYMOUS, True, id="exempt-path-anonymous"),
        pytest.param("/api/v1/products/0", ANONYMOUS, False, id="api-anonymous"),
        pytest.param("/api/v1/products/0", ALICE, True, id="api-with-principal"),
        pytest.param("/productpage", ALICE, True, id="exempt-path-with-principal"),
    ],
)
def test_seed_policy(path: str, authn: AuthnResult, allowed: bool) -> None:
    assert _allowed(SEED, RequestAttributes(path=path), authn) is allowed


@pytest.mark.parametrize(
    ("rules", "attrs", "authn", "allowed"),
    [
        pytest.param("  rules:\n  - to:\n    - operation: {methods: [GET]}\n", RequestAttributes(method="GET"), ANONYMOUS, True, id="methods-match"),
        pytest.param("  rules:\n  - to:\n    - operation: {methods: [GET]}\n", RequestAttributes(method="POST"), ANONYMOUS, False, id="methods-differ"),
        pytest.param("  rules:\n  - to:\n    - operation: {paths: ['/api/*']}\n", RequestAttributes(path="/api/x"), ANONYMOUS, True, id="path-prefix"),
        pytest.param("  rules:\n  - to:\n    - operation: {paths: ['*.css']}\n", RequestAttributes(path="/a/b.css"), ANONYMOUS, True, id="path-suffix"),
        pytest.param("  rules:\n  - to:\n    - operation: {paths: ['/a/{*}/c']}\n", RequestAttributes(path="/a/b/c"), ANONYMOUS, True, id="path-template-one-segment"),
        pytest.param("  rules:\n  - to:\n    - operation: {paths: ['/a/{*}/c']}\n", RequestAttributes(path="/a/b/x/c"), ANONYMOUS, False, id="path-template-not-two-segments"),
        pytest.param("  rules:\n  - to:\n    - operation: {paths: ['/a/{**}']}\n", RequestAttributes(path="/a/b/x/c"), ANONYMOUS, True, id="path-template-many"),
        pytest.param("  rules:\n  - to:\n    - operation: {hosts: [Example.com]}\n", RequestAttributes(host="example.COM"), ANONYMOUS, True, id="host-ignores-case"),
        # Measured against Envoy 1.40: :authority is compared as sent, port included.
        pytest.param("  rules:\n  - to:\n    - operation: {hosts: [Example.com]}\n", RequestAttributes(host="example.com:8080"), ANONYMOUS, False, id="host-with-port-differs"),
        pytest.param("  rules:\n  - to:\n    - operation: {ports: ['8080']}\n", RequestAttributes(destination_port=8080), ANONYMOUS, True, id="port"),
        pytest.param("  rules:\n  - from:\n    - source: {requestPrincipals: ['*']}\n", RequestAttributes(), ANONYMOUS, False, id="request-principal-star-needs-identity"),
        pytest.param("  rules:\n  - from:\n    - source: {requestPrincipals: ['https://idp/*']}\n", RequestAttributes(), ALICE, True, id="request-principal-prefix"),
        pytest.param("  rules:\n  - from:\n    - source: {ipBlocks: [10.0.0.0/8]}\n", RequestAttributes(source_ip="10.1.2.3"), ANONYMOUS, True, id="ip-block"),
        pytest.param("  rules:\n  - from:\n    - source: {notIpBlocks: [10.0.0.0/8]}\n", RequestAttributes(source_ip="10.1.2.3"), ANONYMOUS, False, id="not-ip-block"),
        pytest.param("  rules:\n  - from:\n    - source: {ipBlocks: ['::1']}\n", RequestAttributes(source_ip="::1"), ANONYMOUS, True, id="ipv6"),
        pytest.param("  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/foo/sa/sleep]}\n", RequestAttributes(source_principal="spiffe://cluster.local/ns/foo/sa/sleep"), ANONYMOUS, True, id="peer-principal"),
        pytest.param("  rules:\n  - from:\n    - source: {namespaces: [foo]}\n", RequestAttributes(source_principal="spiffe://cluster.local/ns/foo/sa/sleep"), ANONYMOUS, True, id="peer-namespace"),
        pytest.param("  rules:\n  - from:\n    - source: {notNamespaces: [foo]}\n", RequestAttributes(), ANONYMOUS, True, id="not-namespaces-without-mtls-matches"),
        pytest.param("  rules:\n  - when:\n    - {key: 'request.headers[X-Env]', values: [prod]}\n", RequestAttributes(headers={"x-env": "prod"}), ANONYMOUS, True, id="when-header"),
        pytest.param("  rules:\n  - when:\n    - {key: 'request.headers[x-env]', notValues: [prod]}\n", RequestAttributes(), ANONYMOUS, True, id="when-header-notvalues-absent"),
        pytest.param("  rules:\n  - when:\n    - {key: 'request.auth.claims[groups]', values: [ops]}\n", RequestAttributes(), ALICE, True, id="when-list-claim"),
        pytest.param("  rules:\n  - when:\n    - {key: 'request.auth.claims[org][team]', values: [blue]}\n", RequestAttributes(), ALICE, True, id="when-nested-claim"),
        pytest.param("  rules:\n  - when:\n    - {key: 'request.auth.claims[org][team]', values: [blue]}\n", RequestAttributes(), ANONYMOUS, False, id="when-claim-absent"),
        pytest.param("  rules:\n  - when:\n    - {key: request.auth.audiences, values: [api]}\n", RequestAttributes(), ALICE, True, id="when-audiences"),
        pytest.param("  rules:\n  - from:\n    - source: {requestPrincipals: ['*']}\n    to:\n    - operation: {methods: [GET]}\n", RequestAttributes(method="POST"), ALICE, False, id="from-and-to-are-anded"),
        pytest.param("  rules:\n  - to:\n    - operation: {methods: [POST]}\n    - operation: {methods: [GET]}\n", RequestAttributes(method="GET"), ANONYMOUS, True, id="to-entries-are-ored"),
        pytest.param("  rules:\n  - {}\n", RequestAttributes(), ANONYMOUS, True, id="empty-rule-allows-all"),
        pytest.param("", RequestAttributes(), ANONYMOUS, False, id="allow-without-rules-denies-all"),
    ],
)  # fmt: skip
def test_allow_policy_fields(
    rules: str, attrs: RequestAttributes, authn: AuthnResult, allowed: bool
) -> None:
    assert _allowed(_policy("ALLOW", rules), attrs, authn) is allowed


def test_deny_wins_over_allow_and_reason_names_policy_and_rule() -> None:
    yaml_text = _policy("ALLOW", "  rules:\n  - {}\n", "allow-all") + _policy(
        "DENY", "  rules:\n  - to:\n    - operation: {paths: [/x]}\n  - to:\n    - operation: {paths: [/admin]}\n", "no-admin"
    )  # fmt: skip
    verdict = evaluate(
        snapshot_from(yaml_text).policies, RequestAttributes(path="/admin"), ANONYMOUS
    )
    assert not verdict.is_allowed
    assert (verdict.policy, verdict.rule) == ("foo/no-admin", 1)
    assert verdict.reason == "denied by DENY policy foo/no-admin"


def test_no_policy_allows_and_unmatched_allow_denies() -> None:
    assert evaluate(snapshot_from("").policies, RequestAttributes(), ANONYMOUS).is_allowed
    verdict = evaluate(
        snapshot_from(
            _policy("ALLOW", "  rules:\n  - to:\n    - operation: {paths: [/ok]}\n")
        ).policies,
        RequestAttributes(path="/nope"),
        ANONYMOUS,
    )
    assert (verdict.is_allowed, verdict.reason) == (False, "no ALLOW policy matched")


def test_audit_and_dry_run_are_reported_not_enforced() -> None:
    dry = _policy("DENY", "  rules:\n  - {}\n", "dry").replace(
        "metadata: {name: dry, namespace: foo}",
        "metadata: {name: dry, namespace: foo, annotations: {istio.io/dry-run: 'true'}}",
    )
    yaml_text = dry + _policy("AUDIT", "  rules:\n  - {}\n", "audit")
    verdict = evaluate(snapshot_from(yaml_text).policies, RequestAttributes(), ANONYMOUS)
    assert verdict.is_allowed
    assert [str(m) for m in verdict.dry_run] == ["DENY foo/dry rules[0]"]
    assert [str(m) for m in verdict.audits] == ["AUDIT foo/audit rules[0]"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("  rules:\n  - from:\n    - source: {ipBlocks: [not-an-ip]}\n", "is not an IP address"),
        ("  rules:\n  - to:\n    - operation: {ports: ['http']}\n", "is not a number"),
        (
            "  rules:\n  - when:\n    - {key: request.bogus, values: [x]}\n",
            "is not a key Istio supports",
        ),
    ],
)
def test_uncompilable_values_reject_the_config(rules: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        snapshot_from(_policy("ALLOW", rules))


@pytest.mark.parametrize(
    ("patterns", "value", "matches"),
    [
        (["*"], "", False),
        (["*"], "x", True),
        (["a*"], "abc", True),
        (["*c"], "abc", True),
        (["abc"], "abcd", False),
        (["abc"], None, False),
    ],
)
def test_string_matcher(patterns: list[str], value: str | None, matches: bool) -> None:
    assert StringMatcher(patterns).matches(value) is matches


def test_denials_explain_the_clauses_that_decided() -> None:
    verdict = evaluate(
        snapshot_from(SEED).policies, RequestAttributes(path="/api/v1/products/0"), ANONYMOUS
    )
    assert (
        verdict.detail
        == "rules[0]: from[0].source.notRequestPrincipals and to[0].operation.notPaths matched"
    )
    allow = _policy(
        "ALLOW",
        "  rules:\n  - to:\n    - operation: {methods: [POST], paths: [/x]}\n"
        "  - from:\n    - source: {requestPrincipals: ['*']}\n    when:\n    - key: request.headers[x-env]\n      values: [prod]\n",
    )
    verdict = evaluate(
        snapshot_from(allow).policies, RequestAttributes(path="/x", method="GET"), ALICE
    )
    assert verdict.detail == (
        "foo/p rules[0]: to did not match (to[0].operation.methods); "
        "foo/p rules[1]: when[0] did not match (when[0].request.headers[x-env])"
    )


def test_per_request_workload_selects_other_policies() -> None:
    from extauthz.config.workload import Workload, parse_labels
    from tests.support.config import generation_from

    generation = generation_from(
        _policy("DENY", "  rules:\n  - {}\n", "deny-foo")
        + "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: bar-only, namespace: bar}\nspec:\n  selector: {matchLabels: {app: api}}\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/admin]}\n"
    )
    foo = generation.snapshot_for(Workload("foo"))
    bar = generation.snapshot_for(Workload("bar", parse_labels("app=api")))
    assert generation.snapshot_for(Workload("bar", parse_labels("app=api"))) is bar  # compiled once
    assert not evaluate(foo.policies, RequestAttributes(path="/"), ANONYMOUS).is_allowed
    assert evaluate(bar.policies, RequestAttributes(path="/"), ANONYMOUS).is_allowed
    assert not evaluate(bar.policies, RequestAttributes(path="/admin"), ANONYMOUS).is_allowed

"""Source.serviceAccounts and Source.trustDomains (and their not-forms): read with istiod's
validation, matched on the peer's SPIFFE URI as istiod's RBAC matchers would."""

from __future__ import annotations

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import ANONYMOUS
from extauthz.authz.evaluate import evaluate
from extauthz.authz.rules import compile_rule
from extauthz.config.parse import ConfigError, parse_documents
from extauthz.config.resources import Rule, Source
from tests.support.config import snapshot_from


def _allow(source: str, namespace: str = "foo") -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: p, namespace: {namespace}}}\n"
        f"spec:\n  rules:\n  - from:\n    - source: {source}\n"
    )


def _allowed(source: str, principal: str, namespace: str = "foo") -> bool:
    snapshot = snapshot_from(_allow(source, namespace))
    attrs = RequestAttributes(source_principal=principal)
    return evaluate(snapshot.policies, attrs, ANONYMOUS).is_allowed


SLEEP = "spiffe://cluster.local/ns/foo/sa/sleep"


@pytest.mark.parametrize(
    ("source", "principal", "allowed"),
    [
        pytest.param("{serviceAccounts: [sleep]}", SLEEP, True, id="sa-in-the-policy-namespace"),
        pytest.param("{serviceAccounts: [sleep]}", "spiffe://cluster.local/ns/bar/sa/sleep", False, id="sa-other-namespace"),
        pytest.param("{serviceAccounts: [bar/sleep]}", "spiffe://cluster.local/ns/bar/sa/sleep", True, id="sa-with-namespace"),
        pytest.param("{serviceAccounts: [bar/sleep]}", SLEEP, False, id="sa-with-namespace-not-the-policys"),
        pytest.param("{serviceAccounts: [sleep]}", "spiffe://cluster.local/ns/foo/sa/sleepy", False, id="sa-is-no-prefix"),
        pytest.param("{serviceAccounts: [sleep]}", "spiffe://cluster.local/ns/foo/sa/sleep/x", True, id="sa-then-more-segments"),
        pytest.param("{serviceAccounts: [sleep]}", "spiffe://td/k/v/ns/foo/k/v/sa/sleep", True, id="sa-between-other-segments"),
        pytest.param("{serviceAccounts: [sleep]}", "spiffe://ns/foo/sa/sleep", False, id="sa-needs-a-trust-domain"),
        pytest.param("{serviceAccounts: [sleep]}", "cluster.local/ns/foo/sa/sleep", False, id="sa-needs-spiffe-scheme"),
        pytest.param("{serviceAccounts: [sleep]}", "", False, id="sa-without-mtls"),
        pytest.param("{serviceAccounts: [a.b]}", "spiffe://td/ns/foo/sa/aXb", False, id="sa-dot-is-literal"),
        pytest.param("{serviceAccounts: [other, sleep]}", SLEEP, True, id="sa-any-of"),
        pytest.param("{notServiceAccounts: [sleep]}", SLEEP, False, id="not-sa-matching"),
        pytest.param("{notServiceAccounts: [sleep]}", "spiffe://cluster.local/ns/foo/sa/other", True, id="not-sa-other"),
        pytest.param("{notServiceAccounts: [sleep]}", "", True, id="not-sa-without-mtls-matches"),
        pytest.param("{trustDomains: [cluster.local]}", SLEEP, True, id="td-exact"),
        pytest.param("{trustDomains: [cluster.local]}", "spiffe://cluster.local.evil/ns/foo/sa/sleep", False, id="td-exact-is-no-prefix"),
        pytest.param("{trustDomains: [cluster.local]}", "spiffe://cluster.local", False, id="td-exact-needs-a-path"),
        pytest.param("{trustDomains: ['*']}", SLEEP, True, id="td-presence"),
        pytest.param("{trustDomains: ['*']}", "", False, id="td-presence-without-mtls"),
        pytest.param("{trustDomains: ['*']}", "cluster.local/ns/foo/sa/sleep", False, id="td-presence-needs-spiffe"),
        pytest.param("{trustDomains: ['td-*']}", "spiffe://td-east/ns/foo/sa/sleep", True, id="td-prefix"),
        pytest.param("{trustDomains: ['td-*']}", "spiffe://other/td-x/sa/sleep", False, id="td-prefix-only-the-trust-domain"),
        pytest.param("{trustDomains: ['*.local']}", SLEEP, True, id="td-suffix"),
        pytest.param("{trustDomains: ['*.local']}", "spiffe://a/b.local/ns/foo/sa/s", False, id="td-suffix-never-spans-a-slash"),
        pytest.param("{trustDomains: ['*.local']}", "spiffe://clusterXlocal/ns/foo/sa/s", False, id="td-dot-is-literal"),
        pytest.param("{notTrustDomains: [cluster.local]}", SLEEP, False, id="not-td-matching"),
        pytest.param("{notTrustDomains: [cluster.local]}", "", True, id="not-td-without-mtls-matches"),
        pytest.param("{trustDomains: [cluster.local], serviceAccounts: [sleep]}", "spiffe://other/ns/foo/sa/sleep", False, id="fields-are-anded"),
    ],
)  # fmt: skip
def test_source_fields_match_the_peer(source: str, principal: str, allowed: bool) -> None:
    assert _allowed(source, principal) is allowed


def test_a_bare_service_account_belongs_to_the_policys_namespace() -> None:
    """A root-namespace policy (mesh-wide) means its own namespace, not the workload's."""
    source = "{serviceAccounts: [sleep]}"
    assert not _allowed(source, SLEEP, namespace="istio-system")
    assert _allowed(source, "spiffe://cluster.local/ns/istio-system/sa/sleep", "istio-system")


def test_a_rule_compiled_without_the_policy_namespace_refuses_a_bare_service_account() -> None:
    with pytest.raises(ConfigError, match="needs the policy's namespace"):
        compile_rule(Rule(sources=(Source(service_accounts=("sleep",)),)), 0)
    compile_rule(Rule(sources=(Source(service_accounts=("foo/sleep",)),)), 0)


def test_denials_name_the_field() -> None:
    snapshot = snapshot_from(_allow("{serviceAccounts: [sleep]}"))
    verdict = evaluate(snapshot.policies, RequestAttributes(), ANONYMOUS)
    assert verdict.detail == "foo/p rules[0]: from did not match (from[0].source.serviceAccounts)"


def test_parsed_fields() -> None:
    text = _allow("{serviceAccounts: [a, b/c], notServiceAccounts: [d], trustDomains: ['*'], notTrustDomains: [x.y]}")  # fmt: skip
    [policy] = parse_documents(text, "f.yaml").authorization_policies
    source = policy.rules[0].sources[0]
    assert source == Source(
        service_accounts=("a", "b/c"),
        not_service_accounts=("d",),
        trust_domains=("*",),
        not_trust_domains=("x.y",),
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("{serviceAccounts: [sleep], principals: [a]}", "source: cannot set serviceAccounts with namespaces or principals", id="sa-with-principals"),
        pytest.param("{notServiceAccounts: [sleep], notNamespaces: [a]}", "source: cannot set serviceAccounts with namespaces or principals", id="not-sa-with-not-namespaces"),
        pytest.param("{serviceAccounts: ['ns/*']}", "source.serviceAccounts[0]: 'ns/*': wildcard not allowed", id="sa-wildcard"),
        pytest.param("{serviceAccounts: [a/b/c]}", "source.serviceAccounts[0]: 'a/b/c': expected format", id="sa-two-slashes"),
        pytest.param("{serviceAccounts: [/b]}", "source.serviceAccounts[0]: '/b': expected format", id="sa-empty-namespace"),
        pytest.param("{notServiceAccounts: [ok, a/]}", "source.notServiceAccounts[1]: 'a/': expected format", id="not-sa-empty-name"),
        pytest.param("{serviceAccounts: ['']}", "source.serviceAccounts[0]: must not be empty", id="sa-empty"),
        pytest.param("{serviceAccounts: [" + ", ".join(f"s{i}" for i in range(17)) + "]}", "source.serviceAccounts: may not have more than 16 values", id="sa-too-many"),
        pytest.param("{serviceAccounts: [" + "a" * 321 + "]}", "source.serviceAccounts[0]: value cannot exceed 320 characters", id="sa-too-long"),
        pytest.param("{trustDomains: ['a*b']}", "source.trustDomains[0]: 'a*b': wildcard is only allowed at the start or end", id="td-wildcard-inside"),
        pytest.param("{trustDomains: ['*a*']}", "source.trustDomains[0]: '*a*': at most one wildcard", id="td-two-wildcards"),
        pytest.param("{notTrustDomains: [a/b]}", "source.notTrustDomains[0]: 'a/b': trust domain must not contain '/'", id="not-td-slash"),
        pytest.param("{trustDomains: ['']}", "source.trustDomains[0]: must not be empty", id="td-empty"),
    ],
)  # fmt: skip
def test_istiod_validation(source: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_documents(_allow(source), "f.yaml")
    text = str(error.value)
    assert text.startswith(
        "f.yaml (document 1): AuthorizationPolicy foo/p: field spec.rules[0].from[0]."
    )
    assert message in text


def test_limits_are_inclusive() -> None:
    sixteen = ", ".join(f"s{i}" for i in range(16))
    parse_documents(_allow(f"{{serviceAccounts: [{sixteen}, ]}}"), "f.yaml")
    parse_documents(_allow("{serviceAccounts: [" + "a" * 320 + "]}"), "f.yaml")
    parse_documents(_allow("{serviceAccounts: [a], ipBlocks: [10.0.0.0/8]}"), "f.yaml")

"""rbac_filters: which filters istiod writes for a workload's policies, in which order, with
which policy names, dry-run as shadow rules, and what is skipped (builder.go)."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.config.parse import parse_documents
from extauthz.config.resources import (
    AuthorizationPolicy,
    Condition,
    Meta,
    Operation,
    Origin,
    Rule,
    Source,
)
from extauthz.native.rbac import rbac_filters

RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
ORIGIN = Origin("test.yaml", 1)
ANY_PERMISSION = {"and_rules": {"rules": [{"any": True}]}}
ANY_PRINCIPAL = {"and_ids": {"ids": [{"any": True}]}}
EVERYONE = {"permissions": [ANY_PERMISSION], "principals": [ANY_PRINCIPAL]}
NO_ONE = {"permissions": [{"not_rule": {"any": True}}], "principals": [{"not_id": {"any": True}}]}


def policy(
    *rules: Rule,
    action: str = "ALLOW",
    name: str = "p",
    namespace: str = "foo",
    dry_run: str = "",
    provider: str = "",
) -> AuthorizationPolicy:
    annotations = {"istio.io/dry-run": dry_run} if dry_run else {}
    meta = Meta(name, namespace, annotations)
    return AuthorizationPolicy(meta, ORIGIN, action=action, rules=rules, provider=provider)


def generated(rule: Rule, action: str = "ALLOW", **options: Any) -> dict[str, Any]:
    """The one RBAC policy istiod writes for one rule."""
    filters, warnings = rbac_filters([policy(rule, action=action)], **options)
    assert warnings == []
    policies: dict[str, Any] = filters[0]["typed_config"]["rules"]["policies"]
    assert list(policies) == ["ns[foo]-policy[p]-rule[0]"]
    return policies["ns[foo]-policy[p]-rule[0]"]


def principal_ids(source: Source | None = None, *when: Condition, **options: Any) -> list[Any]:
    """The and_ids of the one principal a rule with at most one source becomes."""
    rule = Rule(sources=(source,) if source else (), conditions=when)
    principals = generated(rule, **options)["principals"]
    assert len(principals) == 1
    ids: list[Any] = principals[0]["and_ids"]["ids"]
    return ids


def permission_rules(operation: Operation | None = None, *when: Condition) -> list[Any]:
    """The and_rules of the one permission a rule with at most one operation becomes."""
    rule = Rule(operations=(operation,) if operation else (), conditions=when)
    permissions = generated(rule)["permissions"]
    assert len(permissions) == 1
    rules: list[Any] = permissions[0]["and_rules"]["rules"]
    return rules


def rbac(*filters_rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "envoy.filters.http.rbac", "typed_config": {"@type": RBAC_TYPE, **r}}
        for r in filters_rules
    ]


def test_no_policies_no_filters() -> None:
    assert rbac_filters([]) == ([], [])


def test_allow_policy_with_an_empty_rule_allows_everyone() -> None:
    filters, _ = rbac_filters([policy(Rule(), name="allow-all")])
    assert filters == rbac(
        {
            "rules": {"policies": {"ns[foo]-policy[allow-all]-rule[0]": EVERYONE}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        }
    )


@pytest.mark.parametrize(
    ("action", "rbac_action"),
    [("ALLOW", {}), ("DENY", {"action": "DENY"}), ("AUDIT", {"action": "LOG"})],
)
def test_policy_without_rules_is_one_policy_that_never_matches(
    action: str, rbac_action: dict[str, str]
) -> None:
    filters, _ = rbac_filters([policy(action=action, name="none")])
    assert filters == rbac(
        {
            "rules": {**rbac_action, "policies": {"ns[foo]-policy[none]-rule[0]": NO_ONE}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        }
    )


def test_filters_come_audit_then_deny_then_allow_whatever_the_input_order() -> None:
    allow = policy(Rule(), name="a")
    deny = policy(Rule(), action="DENY", name="d")
    audit = policy(Rule(), action="AUDIT", name="l")
    filters, _ = rbac_filters([allow, deny, audit])
    assert filters == rbac(
        {
            "rules": {"action": "LOG", "policies": {"ns[foo]-policy[l]-rule[0]": EVERYONE}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        },
        {
            "rules": {"action": "DENY", "policies": {"ns[foo]-policy[d]-rule[0]": EVERYONE}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        },
        {
            "rules": {"policies": {"ns[foo]-policy[a]-rule[0]": EVERYONE}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        },
    )


def test_policies_of_one_action_share_a_filter_named_per_rule() -> None:
    rules = (Rule(), Rule(operations=(Operation(methods=("GET",)),)))
    filters, _ = rbac_filters(
        [policy(*rules, name="one"), policy(Rule(), name="two", namespace="istio-system")]
    )
    assert len(filters) == 1
    assert list(filters[0]["typed_config"]["rules"]["policies"]) == [
        "ns[foo]-policy[one]-rule[0]",
        "ns[foo]-policy[one]-rule[1]",
        "ns[istio-system]-policy[two]-rule[0]",
    ]


@pytest.mark.parametrize(
    ("action", "rules_action", "prefix"),
    [("ALLOW", {}, "istio_dry_run_allow_"), ("DENY", {"action": "DENY"}, "istio_dry_run_deny_")],
    ids=["allow", "deny"],
)
def test_dry_run_policies_are_shadow_rules_with_their_stat_prefix(
    action: str, rules_action: dict[str, str], prefix: str
) -> None:
    filters, _ = rbac_filters([policy(Rule(), action=action, dry_run="true")])
    assert filters == rbac(
        {
            "shadow_rules": {**rules_action, "policies": {"ns[foo]-policy[p]-rule[0]": EVERYONE}},
            "shadow_rules_stat_prefix": prefix,
        }
    )


def test_dry_run_audit_has_no_stat_prefix() -> None:
    filters, _ = rbac_filters([policy(Rule(), action="AUDIT", dry_run="true")])
    assert filters == rbac(
        {"shadow_rules": {"action": "LOG", "policies": {"ns[foo]-policy[p]-rule[0]": EVERYONE}}}
    )


def test_enforced_and_dry_run_policies_mix_in_one_filter() -> None:
    dry = policy(Rule(), name="dry", dry_run="true")
    enforced = policy(Rule(), name="real", dry_run="false")
    filters, _ = rbac_filters([dry, enforced])
    assert filters == rbac(
        {
            "rules": {"policies": {"ns[foo]-policy[real]-rule[0]": EVERYONE}},
            "shadow_rules": {"policies": {"ns[foo]-policy[dry]-rule[0]": EVERYONE}},
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        }
    )


def test_custom_policies_are_warnings_not_filters() -> None:
    custom = policy(Rule(), action="CUSTOM", name="ext", provider="opa")
    filters, warnings = rbac_filters([custom, policy(Rule(), action="DENY")])
    assert [f["typed_config"]["rules"]["action"] for f in filters] == ["DENY"]
    assert warnings == [
        "AuthorizationPolicy foo/ext: action CUSTOM (provider 'opa') has no native RBAC form "
        "(istiod delegates it to an ext_authz provider): no filter written"
    ]


def test_an_unknown_when_key_skips_the_rule_for_every_action() -> None:
    bad = Rule(conditions=(Condition("request.unknown", ("x",)),))
    filters, warnings = rbac_filters([policy(bad, Rule(), action="DENY")])
    assert filters[0]["typed_config"]["rules"]["policies"] == {
        "ns[foo]-policy[p]-rule[1]": EVERYONE
    }
    assert warnings == [
        "ns[foo]-policy[p]-rule[0]: rule skipped (as istiod skips it): unknown attribute request.unknown"
    ]


def test_an_allow_policy_whose_only_rule_is_invalid_allows_nothing() -> None:
    """An invalid value drops the whole ALLOW rule: the filter keeps an empty rule set."""
    bad = Rule(operations=(Operation(ports=("80", "http")),))
    filters, warnings = rbac_filters([policy(bad)])
    assert filters == rbac({"rules": {}, "shadow_rules_stat_prefix": "istio_dry_run_allow_"})
    assert warnings == [
        "ns[foo]-policy[p]-rule[0]: rule skipped (as istiod skips it): invalid port 'http'"
    ]


@pytest.mark.parametrize("action", ["DENY", "AUDIT"])
def test_deny_and_audit_drop_only_the_invalid_value(action: str) -> None:
    """A wider deny rather than none: the bad port goes, the good one stays; a field left
    with no valid value goes too."""
    rule = Rule(
        operations=(Operation(ports=("80", "http"), not_ports=("99999",), methods=("GET",)),)
    )
    filters, warnings = rbac_filters([policy(rule, action=action)])
    permissions = filters[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"][
        "permissions"
    ]
    assert permissions == [
        {
            "and_rules": {
                "rules": [
                    {
                        "or_rules": {
                            "rules": [
                                {"header": {"name": ":method", "string_match": {"exact": "GET"}}}
                            ]
                        }
                    },
                    {"or_rules": {"rules": [{"destination_port": 80}]}},
                ]
            }
        }
    ]
    assert warnings == [
        "ns[foo]-policy[p]-rule[0]: destination.port: value ignored: invalid port 'http'",
        "ns[foo]-policy[p]-rule[0]: destination.port: value ignored: invalid port '99999'",
    ]


def test_deny_drops_an_invalid_claim_key_condition_whole() -> None:
    rule = Rule(
        conditions=(
            Condition("request.auth.claims[a", ("x",)),
            Condition("request.headers[h]", ("v",)),
        )
    )
    filters, warnings = rbac_filters([policy(rule, action="DENY")])
    principals = filters[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"][
        "principals"
    ]
    assert principals == [
        {
            "and_ids": {
                "ids": [
                    {"or_ids": {"ids": [{"header": {"name": "h", "string_match": {"exact": "v"}}}]}}
                ]
            }
        }
    ]
    assert warnings == [
        "ns[foo]-policy[p]-rule[0]: request.auth.claims[a: value ignored: expecting format [<NAME>], but found [a"
    ]


def test_rules_with_several_sources_and_operations_are_alternatives() -> None:
    rule = Rule(
        sources=(Source(namespaces=("a",)), Source()),
        operations=(Operation(methods=("GET",)), Operation()),
        conditions=(
            Condition("request.headers[x]", ("1",)),
            Condition("destination.port", ("80",)),
        ),
    )
    header = {"or_ids": {"ids": [{"header": {"name": "x", "string_match": {"exact": "1"}}}]}}
    port = {"or_rules": {"rules": [{"destination_port": 80}]}}
    namespace = {
        "or_ids": {
            "ids": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/a/.*"}}}}]
        }
    }
    method = {
        "or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}]}
    }
    assert generated(rule) == {
        "permissions": [{"and_rules": {"rules": [method, port]}}, {"and_rules": {"rules": [port]}}],
        "principals": [{"and_ids": {"ids": [namespace, header]}}, {"and_ids": {"ids": [header]}}],
    }


def test_policies_read_from_yaml_translate_like_built_ones() -> None:
    config = parse_documents(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [GET]}}]
""",
        "test.yaml",
    )
    built = policy(Rule(operations=(Operation(methods=("GET",)),)), action="DENY", dry_run="true")
    assert rbac_filters(config.authorization_policies) == rbac_filters([built])


def test_output_is_deterministic() -> None:
    rule = Rule(
        sources=(Source(principals=("a", "b"), namespaces=("x",)),),
        operations=(Operation(paths=("/a", "/b")),),
    )
    policies = [
        policy(rule, name=f"p{i}", action=a) for i, a in enumerate(["ALLOW", "DENY", "AUDIT"] * 3)
    ]
    assert rbac_filters(policies) == rbac_filters(list(policies))
    assert repr(rbac_filters(policies)) == repr(rbac_filters(policies))

"""The principal side of a policy: `from` sources and the `when` keys about the caller
(generator.go, principal.go; request identity read from jwt_authn's `payload` metadata)."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.config.resources import Condition, Source
from tests.unit.native.test_rbac import principal_ids

JWT = "envoy.filters.http.jwt_authn"


def authn(match: dict[str, Any]) -> dict[str, Any]:
    return {"authenticated": {"principal_name": match}}


def regex(pattern: str) -> dict[str, Any]:
    return {"safe_regex": {"regex": pattern}}


def anyof(*ids: dict[str, Any]) -> dict[str, Any]:
    return {"or_ids": {"ids": list(ids)}}


def payload(claim: str, match: dict[str, Any]) -> dict[str, Any]:
    path = [{"key": "payload"}, {"key": claim}]
    return {"metadata": {"filter": JWT, "path": path, "value": {"string_match": match}}}


def iss_sub(iss: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    return {"and_ids": {"ids": [payload("iss", iss), payload("sub", sub)]}}


def string_or_list(path: list[str], *matches: dict[str, Any]) -> dict[str, Any]:
    """A claim that is a string or a list of strings holding one of `matches`."""
    values = [{"string_match": m} for m in matches]
    value = values[0] if len(values) == 1 else {"or_match": {"value_matchers": values}}
    either = {"or_match": {"value_matchers": [{"list_match": {"one_of": value}}, value]}}
    return {
        "metadata": {
            "filter": JWT,
            "path": [{"key": k} for k in ["payload", *path]],
            "value": either,
        }
    }


ANY = regex(".+")


def test_principals_get_the_spiffe_prefix_except_a_lone_star() -> None:
    ids = principal_ids(
        Source(principals=("td/ns/a/sa/b", "pre-*", "*.suf", "*"), not_principals=("x",))
    )
    assert ids == [
        anyof(
            authn({"exact": "spiffe://td/ns/a/sa/b"}),
            authn({"prefix": "spiffe://pre-"}),
            authn(regex(r"spiffe://.*\.suf")),
            authn(ANY),
        ),
        {"not_id": anyof(authn({"exact": "spiffe://x"}))},
    ]


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("https://issuer.example/user", {"exact": "https://issuer.example"}, {"exact": "user"}),
        ("*", ANY, ANY),
        ("*/user", ANY, {"exact": "user"}),
        ("*.example/user", {"suffix": ".example"}, {"exact": "user"}),
        ("*-user", ANY, {"suffix": "-user"}),
        ("https://issuer.example/*", {"exact": "https://issuer.example"}, ANY),
        ("issuer/us*", {"exact": "issuer"}, {"prefix": "us"}),
        ("https:*", {"prefix": "https:"}, ANY),
        ("no-slash", {"exact": "no-slash"}, {"exact": ""}),
        ("*/*", ANY, {"exact": "*"}),
    ],
    ids=[
        "exact",
        "star",
        "any-issuer",
        "issuer-suffix",
        "no-slash-suffix-is-subject",
        "any-subject",
        "subject-prefix",
        "no-slash-prefix-is-issuer",
        "no-slash-empty-subject",
        "star-slash-star-literal-subject",
    ],
)
def test_request_principal_is_issuer_and_subject_in_the_jwt_payload(
    value: str, iss: dict[str, Any], sub: dict[str, Any]
) -> None:
    assert principal_ids(Source(request_principals=(value,))) == [iss_sub(iss, sub)]


def test_several_request_principals_are_or_ids_and_not_values_one_not_id() -> None:
    ids = principal_ids(Source(request_principals=("a/b", "c/d"), not_request_principals=("*",)))
    assert ids == [
        anyof(iss_sub({"exact": "a"}, {"exact": "b"}), iss_sub({"exact": "c"}, {"exact": "d"})),
        {"not_id": iss_sub(ANY, ANY)},
    ]


def test_namespaces_are_regexes_on_the_peer_principal_quoted_as_go_does() -> None:
    ids = principal_ids(Source(namespaces=("ns", "ns-*", "*", "a.b[c]-d"), not_namespaces=("*-x",)))
    assert ids == [
        anyof(
            authn(regex(".*/ns/ns/.*")),
            authn(regex(".*/ns/ns-.*/.*")),
            authn(regex(".*/ns/.*/.*")),
            authn(regex(r".*/ns/a\.b\[c\]-d/.*")),
        ),
        {"not_id": anyof(authn(regex(".*/ns/.*-x/.*")))},
    ]


def test_service_accounts_default_to_the_policy_namespace() -> None:
    ids = principal_ids(
        Source(service_accounts=("my-ns/my-sa", "sa.only"), not_service_accounts=("bad",))
    )
    assert ids == [
        anyof(
            authn(regex("spiffe://.+/ns/my-ns/(.+/|)sa/my-sa(/.+)?")),
            authn(regex(r"spiffe://.+/ns/foo/(.+/|)sa/sa\.only(/.+)?")),
        ),
        {"not_id": anyof(authn(regex("spiffe://.+/ns/foo/(.+/|)sa/bad(/.+)?")))},
    ]


def test_trust_domains_are_prefixes_or_one_segment_regexes() -> None:
    ids = principal_ids(
        Source(
            trust_domains=("cluster.local", "*", "td-*", "*.example", "cluster.local"),
            not_trust_domains=("a*b*c",),
        )
    )
    assert ids == [
        anyof(
            authn({"prefix": "spiffe://cluster.local/"}),
            authn({"prefix": "spiffe://"}),
            authn(regex("spiffe://td-[^/]*/.*")),
            authn(regex(r"spiffe://[^/]*\.example/.*")),
        ),
        {"not_id": anyof(authn(regex(r"spiffe://a[^/]*b\*c/.*")))},
    ]


def test_ip_blocks_are_the_peer_and_remote_ip_blocks_the_client() -> None:
    source = Source(
        ip_blocks=("10.0.0.1", "10.1.2.3/16"),
        not_ip_blocks=("2001:DB8:0:0::1",),
        remote_ip_blocks=("::ffff:1.2.3.4",),
        not_remote_ip_blocks=("fd00::/8",),
    )
    assert principal_ids(source) == [
        anyof({"remote_ip": {"address_prefix": "::ffff:1.2.3.4", "prefix_len": 128}}),
        {"not_id": anyof({"remote_ip": {"address_prefix": "fd00::", "prefix_len": 8}})},
        anyof(
            {"direct_remote_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}},
            {"direct_remote_ip": {"address_prefix": "10.1.2.3", "prefix_len": 16}},
        ),
        {
            "not_id": anyof(
                {"direct_remote_ip": {"address_prefix": "2001:db8::1", "prefix_len": 128}}
            )
        },
    ]


def test_source_fields_come_in_istiods_order_then_when_keys() -> None:
    source = Source(
        ip_blocks=("1.1.1.1",),
        remote_ip_blocks=("2.2.2.2",),
        namespaces=("ns",),
        trust_domains=("td",),
        service_accounts=("sa",),
        request_principals=("i/s",),
        principals=("p",),
    )
    ids = principal_ids(source, Condition("request.headers[x]", ("v",)))
    assert ids == [
        anyof(authn({"exact": "spiffe://p"})),
        iss_sub({"exact": "i"}, {"exact": "s"}),
        anyof(authn(regex("spiffe://.+/ns/foo/(.+/|)sa/sa(/.+)?"))),
        anyof(authn({"prefix": "spiffe://td/"})),
        anyof(authn(regex(".*/ns/ns/.*"))),
        anyof({"remote_ip": {"address_prefix": "2.2.2.2", "prefix_len": 32}}),
        anyof({"direct_remote_ip": {"address_prefix": "1.1.1.1", "prefix_len": 32}}),
        anyof({"header": {"name": "x", "string_match": {"exact": "v"}}}),
    ]


@pytest.mark.parametrize(
    ("key", "values", "expected"),
    [
        (
            "source.ip",
            ("10.0.0.0/8",),
            anyof({"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}),
        ),
        (
            "remote.ip",
            ("1.2.3.4",),
            anyof({"remote_ip": {"address_prefix": "1.2.3.4", "prefix_len": 32}}),
        ),
        ("source.namespace", ("ns",), anyof(authn(regex(".*/ns/ns/.*")))),
        ("source.principal", ("td/ns/a/sa/b",), anyof(authn({"exact": "spiffe://td/ns/a/sa/b"}))),
        (
            "source.serviceAccount",
            ("sa",),
            anyof(authn(regex("spiffe://.+/ns/foo/(.+/|)sa/sa(/.+)?"))),
        ),
        ("source.trustDomain", ("td",), anyof(authn({"prefix": "spiffe://td/"}))),
        ("request.auth.principal", ("i/s",), iss_sub({"exact": "i"}, {"exact": "s"})),
        (
            "request.auth.audiences",
            ("a", "b*"),
            string_or_list(["aud"], {"exact": "a"}, {"prefix": "b"}),
        ),
        ("request.auth.presenter", ("*",), string_or_list(["azp"], ANY)),
        ("request.auth.claims[groups]", ("*-dev",), string_or_list(["groups"], {"suffix": "-dev"})),
        ("request.auth.claims[a][b][c]", ("x",), string_or_list(["a", "b", "c"], {"exact": "x"})),
        ("request.auth.claims[a.b]", ("x",), string_or_list(["a.b"], {"exact": "x"})),
        ("request.auth.claims", ("x",), string_or_list([], {"exact": "x"})),
        (
            "request.headers[X-Tenant]",
            ("t", "t-*", "*-t", "*"),
            anyof(
                {"header": {"name": "X-Tenant", "string_match": {"exact": "t"}}},
                {"header": {"name": "X-Tenant", "string_match": {"prefix": "t-"}}},
                {"header": {"name": "X-Tenant", "string_match": {"suffix": "-t"}}},
                {"header": {"name": "X-Tenant", "present_match": True}},
            ),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_when_keys_about_the_caller(
    key: str, values: tuple[str, ...], expected: dict[str, Any]
) -> None:
    assert principal_ids(None, Condition(key, values)) == [expected]
    assert principal_ids(None, Condition(key, (), values)) == [{"not_id": expected}]


def test_when_values_then_not_values_under_one_key() -> None:
    ids = principal_ids(None, Condition("request.auth.claims[iss]", ("a",), ("b",)))
    assert ids == [
        string_or_list(["iss"], {"exact": "a"}),
        {"not_id": string_or_list(["iss"], {"exact": "b"})},
    ]


def test_no_source_and_no_when_is_any_principal() -> None:
    assert principal_ids(None) == [{"any": True}]


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (
            "cluster.local/ns/a/sa/b",
            [{"exact": "spiffe://td1/ns/a/sa/b"}, {"exact": "spiffe://cluster.local/ns/a/sa/b"}],
        ),
        (
            "td1/ns/a/sa/b",
            [{"exact": "spiffe://td1/ns/a/sa/b"}, {"exact": "spiffe://cluster.local/ns/a/sa/b"}],
        ),
        ("other/ns/a/sa/b", [{"exact": "spiffe://other/ns/a/sa/b"}]),
        ("*/ns/a/sa/b", [regex("spiffe://.*/ns/a/sa/b")]),
        (
            "*1/ns/a/sa/b",
            [regex("spiffe://.*1/ns/a/sa/b"), {"exact": "spiffe://cluster.local/ns/a/sa/b"}],
        ),
        ("ns/a/sa/b", [{"exact": "spiffe://ns/a/sa/b"}]),
    ],
    ids=[
        "alias",
        "mesh-domain",
        "foreign-domain",
        "any-domain",
        "suffix-kept-where-it-matches",
        "not-five-segments",
    ],
)
def test_principals_are_written_for_every_trust_domain_alias(
    principal: str, expected: list[dict[str, Any]]
) -> None:
    ids = principal_ids(
        Source(principals=(principal,)), trust_domain="td1", trust_domain_aliases=("cluster.local",)
    )
    assert ids == [anyof(*(authn(e) for e in expected))]


def test_a_wildcard_trust_domain_matching_the_mesh_one_is_rewritten_to_it() -> None:
    """istiod's ReplaceTrustDomainAliases with the default mesh: `c*` matches cluster.local,
    which does not suffix-match it, so the principal becomes an exact cluster.local one."""
    ids = principal_ids(Source(principals=("c*/ns/a/sa/b", "*local/ns/a/sa/b")))
    assert ids == [
        anyof(
            authn({"exact": "spiffe://cluster.local/ns/a/sa/b"}),
            authn(regex(r"spiffe://.*local/ns/a/sa/b")),
        )
    ]


def test_trust_domains_expand_to_the_aliases() -> None:
    ids = principal_ids(
        Source(trust_domains=("td1", "x")), trust_domain="td1", trust_domain_aliases=("old",)
    )
    assert ids == [
        anyof(
            authn({"prefix": "spiffe://td1/"}),
            authn({"prefix": "spiffe://old/"}),
            authn({"prefix": "spiffe://x/"}),
        )
    ]


def test_a_when_principal_is_migrated_once_per_source_as_istiod_shares_it() -> None:
    from extauthz.config.resources import Rule
    from tests.unit.native.test_rbac import generated

    rule = Rule(
        sources=(Source(), Source()),
        conditions=(Condition("source.principal", ("td1/ns/a/sa/b",)),),
    )
    principals = generated(rule, trust_domain="td1", trust_domain_aliases=("old",))["principals"]
    twice = ["td1", "old", "td1", "old"]
    expected = anyof(*(authn({"exact": f"spiffe://{td}/ns/a/sa/b"}) for td in twice))
    assert principals == [{"and_ids": {"ids": [expected]}}] * 2

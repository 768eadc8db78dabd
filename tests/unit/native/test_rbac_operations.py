"""The permission side of a policy: `to` operations and the `when` keys about the request's
destination (generator.go, permission.go, matcher/header.go, matcher/template.go)."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.config.resources import Condition, Operation
from extauthz.native.rbac import InvalidValue, cidr_range, port_number
from tests.unit.native.test_rbac import permission_rules

TEMPLATE_TYPE = (
    "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
)


def anyof(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"or_rules": {"rules": list(rules)}}


def header(name: str, **match: Any) -> dict[str, Any]:
    if match == {"present": True}:
        return {"header": {"name": name, "present_match": True}}
    return {"header": {"name": name, "string_match": match}}


def path(**match: Any) -> dict[str, Any]:
    return {"url_path": {"path": match}}


def template(text: str) -> dict[str, Any]:
    config = {"@type": TEMPLATE_TYPE, "path_template": text}
    return {"uri_template": {"name": "uri-template", "typed_config": config}}


def test_hosts_match_the_authority_ignoring_case() -> None:
    rules = permission_rules(
        Operation(hosts=("a.com", "*.b.com", "c.*", "*"), not_hosts=("x.com",))
    )
    assert rules == [
        anyof(
            header(":authority", exact="a.com", ignore_case=True),
            header(":authority", suffix=".b.com", ignore_case=True),
            header(":authority", prefix="c.", ignore_case=True),
            header(":authority", present=True),
        ),
        {"not_rule": anyof(header(":authority", exact="x.com", ignore_case=True))},
    ]


def test_methods_match_the_method_pseudo_header_case_sensitively() -> None:
    rules = permission_rules(Operation(methods=("GET", "P*", "*T", "*"), not_methods=("*",)))
    assert rules == [
        anyof(
            header(":method", exact="GET"),
            header(":method", prefix="P"),
            header(":method", suffix="T"),
            header(":method", present=True),
        ),
        {"not_rule": anyof(header(":method", present=True))},
    ]


def test_paths_are_url_path_matchers_or_uri_templates() -> None:
    paths = ("/exact", "/prefix/*", "*.png", "*", "/a/{*}", "/b/{**}", "/c/{*}/d/{**}", "/{x}")
    rules = permission_rules(Operation(paths=paths, not_paths=("/admin/{**}",)))
    assert rules == [
        anyof(
            path(exact="/exact"),
            path(prefix="/prefix/"),
            path(suffix=".png"),
            path(safe_regex={"regex": ".+"}),
            template("/a/*"),
            template("/b/**"),
            template("/c/*/d/**"),
            path(exact="/{x}"),
        ),
        {"not_rule": anyof(template("/admin/**"))},
    ]


def test_ports_are_destination_ports() -> None:
    rules = permission_rules(Operation(ports=("80", "08080", "0"), not_ports=("65535",)))
    assert rules == [
        anyof({"destination_port": 80}, {"destination_port": 8080}, {"destination_port": 0}),
        {"not_rule": anyof({"destination_port": 65535})},
    ]


def test_operation_fields_come_hosts_methods_paths_ports_then_when_keys() -> None:
    operation = Operation(ports=("80",), paths=("/p",), methods=("GET",), hosts=("h",))
    rules = permission_rules(operation, Condition("connection.sni", ("s",)))
    assert rules == [
        anyof(header(":authority", exact="h", ignore_case=True)),
        anyof(header(":method", exact="GET")),
        anyof(path(exact="/p")),
        anyof({"destination_port": 80}),
        anyof({"requested_server_name": {"exact": "s"}}),
    ]


def metadata(filter_name: str, key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"filter": filter_name, "path": [{"key": key}], "value": value}}


@pytest.mark.parametrize(
    ("key", "values", "expected"),
    [
        (
            "destination.ip",
            ("10.0.0.1", "10.2.3.4/16", "2001:db8::/32"),
            anyof(
                {"destination_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}},
                {"destination_ip": {"address_prefix": "10.2.3.4", "prefix_len": 16}},
                {"destination_ip": {"address_prefix": "2001:db8::", "prefix_len": 32}},
            ),
        ),
        ("destination.port", ("443",), anyof({"destination_port": 443})),
        (
            "connection.sni",
            ("a.com", "*.b.com", "c.*", "*"),
            anyof(
                {"requested_server_name": {"exact": "a.com"}},
                {"requested_server_name": {"suffix": ".b.com"}},
                {"requested_server_name": {"prefix": "c."}},
                {"requested_server_name": {"safe_regex": {"regex": ".+"}}},
            ),
        ),
        (
            "experimental.envoy.filters.http.a[b]",
            ("v",),
            metadata("envoy.filters.http.a", "b", {"string_match": {"exact": "v"}}),
        ),
        (
            "experimental.envoy.filters.http.a[b]",
            ("v*", "[in-list]", "*"),
            metadata(
                "envoy.filters.http.a",
                "b",
                {
                    "or_match": {
                        "value_matchers": [
                            {"string_match": {"prefix": "v"}},
                            {"list_match": {"one_of": {"string_match": {"exact": "in-list"}}}},
                            {"string_match": {"safe_regex": {"regex": ".+"}}},
                        ]
                    }
                },
            ),
        ),
    ],
    ids=["destination-ip", "destination-port", "sni", "envoy-filter-one", "envoy-filter-list"],
)
def test_when_keys_about_the_destination(
    key: str, values: tuple[str, ...], expected: dict[str, Any]
) -> None:
    assert permission_rules(None, Condition(key, values)) == [expected]
    assert permission_rules(None, Condition(key, (), values)) == [{"not_rule": expected}]


def test_no_operation_and_no_when_is_any_permission() -> None:
    assert permission_rules(None) == [{"any": True}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3", {"address_prefix": "10.1.2.3", "prefix_len": 32}),
        ("10.1.2.3/8", {"address_prefix": "10.1.2.3", "prefix_len": 8}),
        ("0.0.0.0/0", {"address_prefix": "0.0.0.0", "prefix_len": 0}),
        ("2001:DB8:0:0:0:0:0:1", {"address_prefix": "2001:db8::1", "prefix_len": 128}),
        ("::ffff:10.0.0.1/120", {"address_prefix": "::ffff:10.0.0.1", "prefix_len": 120}),
    ],
    ids=["address", "unmasked-cidr", "everything", "ipv6-canonical", "ipv4-mapped"],
)
def test_cidr_ranges_are_written_as_go_netip_prints_them(
    text: str, expected: dict[str, Any]
) -> None:
    assert cidr_range(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.0.0",
        "010.0.0.1",
        "10.0.0.1/33",
        "10.0.0.1/08",
        "10.0.0.1/+8",
        "fe80::1%eth0/64",
        "host",
    ],
)
def test_what_go_netip_refuses_is_an_invalid_value(text: str) -> None:
    with pytest.raises(InvalidValue):
        cidr_range(text)


@pytest.mark.parametrize("text", ["", "-1", "+80", " 80", "65536", "http", "\uff18\uff10"])
def test_what_istiod_refuses_as_a_port_is_an_invalid_value(text: str) -> None:
    with pytest.raises(InvalidValue):
        port_number(text)

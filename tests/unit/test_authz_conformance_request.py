"""`hosts`, `paths` templates and `request.headers[...]` as Envoy's RBAC filter decides them
from istiod's matchers. Every row was measured against Envoy 1.40 (native RBAC behind the
HCM settings of extauthz/native/bootstrap.py, tests/conformance/harness.py)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from extauthz.attributes import RequestAttributes
from tests.unit.authz_policy import is_allowed

HOSTS = (
    "example.com", "EXAMPLE.com", "example.com:8080", "example.com:80", "api.example.com",
    "example.com.", "example.org", "[::1]", "[::1]:8080", "a.b.example.com",
    "example.com.:8080", "127.0.0.1", "127.0.0.1:80",
)  # fmt: skip

# `hosts: [value]` -> the :authority values Envoy 1.40 lets through (as sent, case ignored,
# port included); `notHosts: [value]` lets through exactly the others.
MEASURED_HOSTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("exact-ignores-case-not-port", "example.com", ("example.com", "EXAMPLE.com")),
    ("upper-case-value", "EXAMPLE.COM", ("example.com", "EXAMPLE.com")),
    ("suffix-wildcard", "*.example.com", ("api.example.com", "a.b.example.com")),
    ("prefix-wildcard-takes-the-port", "example.*", (
        "example.com", "EXAMPLE.com", "example.com:8080", "example.com:80", "example.com.",
        "example.org", "example.com.:8080",
    )),
    ("with-port", "example.com:8080", ("example.com:8080",)),
    ("ipv6-literal", "[::1]", ("[::1]",)),
    ("trailing-dot-is-another-host", "example.com.", ("example.com.",)),
    ("star-any", "*", HOSTS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "host", "allowed"),
    [
        pytest.param(value, host, host in allowed, id=f"{name}-{host}")
        for name, value, allowed in MEASURED_HOSTS
        for host in HOSTS
    ],
)
def test_hosts(value: str, host: str, allowed: bool) -> None:
    request = RequestAttributes(host=host)
    assert is_allowed("ALLOW", _to("hosts", value), request) is allowed
    if value != "*":
        assert is_allowed("ALLOW", _to("notHosts", value), request) is (not allowed)


def _to(field: str, value: str) -> list[dict[str, Any]]:
    return [{"to": [{"operation": {field: [value]}}]}]


# Paths as Envoy hands them to RBAC and ext_authz alike: normalized (`"` `{` `|` `^` `<` `>`
# and the backquote percent-encoded, `\` turned into `/`), `[` left as sent; query stripped.
SEGMENTS_IN_ONE = (
    "a", "a*b", "a%20b", "a%22b", "a%7Bb", "a=b", "a:b", "a@b", "a!b", "a'b", "a$b", "a&b",
    "a(b)", "a+b", "a,b", "a;b", "a~b", "a.b", "a-b", "a_b", "a%2Fb",
)  # fmt: skip

# (template, path, allowed) measured against Envoy 1.40's uri_template matcher.
MEASURED_TEMPLATES: list[tuple[str, str, bool]] = [
    *(("/api/{*}/x", f"/api/{s}/x", True) for s in SEGMENTS_IN_ONE),
    ("/api/{*}/x", "/api/a[b/x", False),  # `[` is no pchar
    ("/api/{*}/x", "/api//x", False),
    ("/api/{*}/x", "/api/a/b/x", False),
    ("/api/{**}/x", "/api/a/x", True),
    ("/api/{**}/x", "/api/a/b/x", True),
    ("/api/{**}/x", "/api//x", True),  # {**} may be empty
    ("/api/{**}/x", "/api/x", False),
    ("/api/{**}/x", "/api/a[b/x", False),
    ("/api/{**}", "/api/", True),
    ("/api/{**}", "/api", False),
    ("/api/{**}", "/api/a/b/", True),
    ("/api/{**}", "/api/a*b", True),
    ("/api/{*}", "/api/a*b", True),
    ("/api/{*}", "/api/", False),
    ("/api/{*}", "/api/a/", False),
    ("/api/{*}/{**}", "/api/a/", True),
    ("/api/{*}/{**}", "/api/a/b/x", True),
    ("/api/{*}/{**}", "/api/a", False),
]


@pytest.mark.parametrize(
    ("template", "path", "allowed"),
    [pytest.param(t, p, a, id=f"{t}-{p}") for t, p, a in MEASURED_TEMPLATES],
)
def test_path_templates(template: str, path: str, allowed: bool) -> None:
    request = RequestAttributes(path=path)
    assert is_allowed("ALLOW", _to("paths", template), request) is allowed
    assert is_allowed("ALLOW", _to("notPaths", template), request) is (not allowed)


# Each request's x-env header lines, as Envoy keeps them (leading/trailing spaces trimmed).
HEADER_LINES: dict[str, tuple[str, ...]] = {
    "absent": (),
    "prod": ("prod",),
    "empty": ("",),
    "Prod": ("Prod",),
    "two-lines-prod-dev": ("prod", "dev"),
    "two-lines-dev-prod": ("dev", "prod"),
    "one-line-prod,dev": ("prod,dev",),
    "star": ("*",),
    "two-lines-empty-prod": ("", "prod"),
}
# `request.headers[x-env]` values -> the requests Envoy 1.40 lets through; notValues lets
# through exactly the others. A value is tested on each line apart; `*` is presence.
MEASURED_HEADERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("exact-any-line", "prod", ("prod", "two-lines-prod-dev", "two-lines-dev-prod", "two-lines-empty-prod")),
    ("exact-second-line", "dev", ("two-lines-prod-dev", "two-lines-dev-prod")),
    ("lines-are-not-joined", "prod,dev", ("one-line-prod,dev",)),
    ("prefix-any-line", "pr*", ("prod", "two-lines-prod-dev", "two-lines-dev-prod", "one-line-prod,dev", "two-lines-empty-prod")),
    ("suffix-any-line", "*od", ("prod", "Prod", "two-lines-prod-dev", "two-lines-dev-prod", "two-lines-empty-prod")),
    ("star-is-presence-empty-included", "*", tuple(n for n in HEADER_LINES if n != "absent")),
]  # fmt: skip


def _header_request(lines: tuple[str, ...]) -> RequestAttributes:
    if not lines:
        return RequestAttributes()
    return RequestAttributes(
        headers=MappingProxyType({"x-env": ",".join(lines)}),
        header_lists=MappingProxyType({"x-env": lines}),
    )


@pytest.mark.parametrize("key", ["request.headers[x-env]", "request.headers[X-Env]"])
@pytest.mark.parametrize(
    ("value", "request_name", "allowed"),
    [
        pytest.param(value, request_name, request_name in allowed, id=f"{name}-{request_name}")
        for name, value, allowed in MEASURED_HEADERS
        for request_name in HEADER_LINES
    ],
)
def test_request_headers(key: str, value: str, request_name: str, allowed: bool) -> None:
    request = _header_request(HEADER_LINES[request_name])
    for values, expected in (("values", allowed), ("notValues", not allowed)):
        rules = [{"when": [{"key": key, values: [value]}]}]
        assert is_allowed("ALLOW", rules, request) is expected

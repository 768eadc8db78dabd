"""requestPrincipals, notRequestPrincipals and `request.auth.principal` as Envoy's RBAC filter
decides them from istiod's matchers: the payload's `iss` and `sub` apart, split at the
pattern's last `/`, both present. Every row was measured against Envoy 1.40 (native RBAC +
jwt_authn, tests/conformance/harness.py)."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import ANONYMOUS, AuthnResult
from tests.unit.authz_policy import is_allowed, verified

TOKENS: dict[str, AuthnResult] = {
    "none": ANONYMOUS,
    "iss-a/alice": verified({"iss": "iss-a", "sub": "alice"}),
    "iss-a/<no sub>": verified({"iss": "iss-a"}),
    "iss-a/<empty sub>": verified({"iss": "iss-a", "sub": ""}),
    "iss-a/svc/x": verified({"iss": "iss-a", "sub": "svc/x"}),
    "iss-a/x/alice": verified({"iss": "iss-a", "sub": "x/alice"}),
    "url/alice": verified({"iss": "https://issuer.example/c", "sub": "alice"}),
    "iss-b/bob": verified({"iss": "iss-b", "sub": "bob"}),
    "iss-b/malice": verified({"iss": "iss-b", "sub": "malice"}),
}
WITH_IDENTITY = (
    "iss-a/alice",
    "iss-a/svc/x",
    "iss-a/x/alice",
    "url/alice",
    "iss-b/bob",
    "iss-b/malice",
)

# pattern -> the tokens `requestPrincipals: [pattern]` lets through, measured against Envoy 1.40
# (`notRequestPrincipals: [pattern]` lets through exactly the others, "none" included).
MEASURED: list[tuple[str, str, tuple[str, ...]]] = [
    ("star-needs-iss-and-sub", "*", WITH_IDENTITY),
    ("issuer-any-subject", "iss-a/*", ("iss-a/alice", "iss-a/svc/x", "iss-a/x/alice")),
    ("any-issuer-exact-subject", "*/alice", ("iss-a/alice", "url/alice")),
    ("slash-in-subject-never-matches", "iss-a/svc/x", ()),
    ("slash-in-issuer-split-at-last", "https://issuer.example/c/alice", ("url/alice",)),
    ("no-slash-is-issuer-with-empty-subject", "iss-a", ("iss-a/<empty sub>",)),
    ("no-slash-issuer-prefix-any-subject", "iss-a*", ("iss-a/alice", "iss-a/svc/x", "iss-a/x/alice")),
    ("no-slash-subject-suffix", "*alice", ("iss-a/alice", "iss-a/x/alice", "iss-b/malice", "url/alice")),
    ("subject-prefix", "iss-a/al*", ("iss-a/alice",)),
    ("issuer-suffix", "*a/alice", ("iss-a/alice",)),
    ("issuer-suffix-with-slash", "*c/alice", ("url/alice",)),
    ("empty-subject-exact", "iss-a/", ("iss-a/<empty sub>",)),
    ("any-issuer-empty-subject", "*/", ("iss-a/<empty sub>",)),
    ("star-slash-star-is-subject-star", "*/*", ()),
    ("issuer-iss-a/x", "iss-a/x/*", ()),
    ("issuer-prefix-of-url-is-exact", "https://issuer.example/*", ()),
]  # fmt: skip


def _source(field: str, pattern: str) -> list[dict[str, Any]]:
    return [{"from": [{"source": {field: [pattern]}}]}]


def _when(values: str, pattern: str) -> list[dict[str, Any]]:
    return [{"when": [{"key": "request.auth.principal", values: [pattern]}]}]


CASES = [
    pytest.param(pattern, token, token in allowed, id=f"{name}-{token}")
    for name, pattern, allowed in MEASURED
    for token in TOKENS
]


@pytest.mark.parametrize(("pattern", "token", "allowed"), CASES)
def test_request_principals(pattern: str, token: str, allowed: bool) -> None:
    request = RequestAttributes()
    authn = TOKENS[token]
    assert is_allowed("ALLOW", _source("requestPrincipals", pattern), request, authn) is allowed
    assert is_allowed("ALLOW", _source("notRequestPrincipals", pattern), request, authn) is (
        not allowed
    )


@pytest.mark.parametrize(
    ("pattern", "token", "allowed"),
    [c for c in CASES if c.values[0] in ("*", "iss-a/*", "iss-a/svc/x")],
)
def test_when_request_auth_principal(pattern: str, token: str, allowed: bool) -> None:
    request = RequestAttributes()
    authn = TOKENS[token]
    assert is_allowed("ALLOW", _when("values", pattern), request, authn) is allowed
    assert is_allowed("ALLOW", _when("notValues", pattern), request, authn) is (not allowed)


@pytest.mark.parametrize(
    ("token", "allowed"),
    [
        pytest.param("iss-a/alice", True, id="identity"),
        pytest.param("none", False, id="no-token"),
        # The sample's "require a JWT": istiod's `*` needs a sub, so a token without one (or
        # with an empty one) is denied like no token at all.
        pytest.param("iss-a/<no sub>", False, id="token-without-sub"),
        pytest.param("iss-a/<empty sub>", False, id="token-with-empty-sub"),
    ],
)
def test_deny_not_request_principals_star(token: str, allowed: bool) -> None:
    rules = _source("notRequestPrincipals", "*")
    assert is_allowed("DENY", rules, RequestAttributes(), TOKENS[token]) is allowed

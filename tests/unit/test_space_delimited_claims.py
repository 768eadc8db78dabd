"""JWTRule.spaceDelimitedClaims: the claims Envoy's jwt_authn splits on spaces
(normalize_payload_in_metadata) before RBAC matches `request.auth.claims[...]` per element;
"scope" and "permission" always, as istiod asks of every provider."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import authenticate
from extauthz.authn.claims import normalized_payload, space_delimited_claims
from extauthz.authn.result import AuthnResult
from extauthz.authz.evaluate import evaluate
from extauthz.config.parse import ConfigError, parse_documents
from tests.support.config import request_authentication, snapshot_from
from tests.support.tokens import ISSUER, NOW, claims, jwks_of, rsa_key

KEY = rsa_key()
OTHER_KEY = rsa_key(kid="other")
OTHER_ISSUER = "https://other.example"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("read write", ["read", "write"], id="words"),
        pytest.param("  read   write ", ["read", "write"], id="runs-of-spaces-give-no-empty-words"),
        pytest.param("read", ["read"], id="one-word-becomes-a-list"),
        pytest.param("read\twrite", ["read\twrite"], id="only-the-space-character-splits"),
        pytest.param("", "", id="empty-string-stays"),
        pytest.param("   ", "   ", id="only-spaces-stays-a-string"),
        pytest.param(["a b", "c"], ["a b", "c"], id="list-untouched"),
        pytest.param(7, 7, id="number-untouched"),
        pytest.param({"x": "a b"}, {"x": "a b"}, id="object-untouched"),
    ],
)  # fmt: skip
def test_normalized_payload_splits_strings_as_envoy(value: Any, expected: Any) -> None:
    payload = {"scope": value, "other": "a b"}
    assert normalized_payload(payload, ("scope",)) == {"scope": expected, "other": "a b"}


def test_a_claim_name_is_a_top_level_key_never_a_path() -> None:
    payload = {"a": {"b": "x y"}, "a.b": "p q"}
    assert normalized_payload(payload, ("a.b",)) == {"a": {"b": "x y"}, "a.b": ["p", "q"]}


def test_istiod_adds_the_defaults_sorted() -> None:
    assert space_delimited_claims(()) == ("permission", "scope")
    assert space_delimited_claims(("roles", "scope", "a")) == ("a", "permission", "roles", "scope")


def _providers(*rules: tuple[str, str, str]) -> Any:
    """A RequestAuthentication per (issuer, jwks, extra rule fields)."""
    text = "\n---\n".join(
        request_authentication(jwks, issuer, extra).replace("name: jwt", f"name: jwt{i}")
        for i, (issuer, jwks, extra) in enumerate(rules)
    )
    return snapshot_from(text).providers


def _authn(providers: Any, token: str) -> AuthnResult:
    attrs = RequestAttributes(headers={"authorization": f"Bearer {token}"})
    result = authenticate(attrs, providers, lambda *_: None, NOW)
    assert result.is_ok
    return result


SCOPED = claims(scope="read write", permission="p1 p2", roles="admin dev", tags="x y")


def test_defaults_are_split_without_the_field() -> None:
    result = _authn(_providers((ISSUER, jwks_of(KEY), "")), KEY.sign(SCOPED))
    assert result.claims["scope"] == ["read", "write"]
    assert result.claims["permission"] == ["p1", "p2"]
    assert result.claims["roles"] == "admin dev"
    assert result.payloads[ISSUER]["scope"] == ["read", "write"]  # the metadata, too


def test_listed_claims_are_split_too() -> None:
    providers = _providers((ISSUER, jwks_of(KEY), "spaceDelimitedClaims: [roles]"))
    result = _authn(providers, KEY.sign(SCOPED))
    assert result.claims["roles"] == ["admin", "dev"]
    assert result.claims["scope"] == ["read", "write"]
    assert result.claims["tags"] == "x y"
    assert result.payloads[ISSUER]["roles"] == ["admin", "dev"]


def test_each_token_is_split_by_the_rule_that_verified_it() -> None:
    """Envoy normalizes per provider: another rule's list does not apply."""
    providers = _providers(
        (ISSUER, jwks_of(KEY), "spaceDelimitedClaims: [roles]"),
        (OTHER_ISSUER, jwks_of(OTHER_KEY), "spaceDelimitedClaims: [tags]"),
    )
    mine = _authn(providers, KEY.sign(SCOPED))
    assert (mine.claims["roles"], mine.claims["tags"]) == (["admin", "dev"], "x y")
    other = _authn(providers, OTHER_KEY.sign({**SCOPED, "iss": OTHER_ISSUER}))
    assert (other.claims["roles"], other.claims["tags"]) == ("admin dev", ["x", "y"])


def _policy(key: str, values: str) -> str:
    return (
        "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p, namespace: foo}\n"
        f"spec:\n  rules:\n  - when:\n    - {{key: '{key}', values: {values}}}\n"
    )


@pytest.mark.parametrize(
    ("extra", "key", "values", "allowed"),
    [
        pytest.param("", "request.auth.claims[scope]", "[write]", True, id="scope-one-word"),
        pytest.param("", "request.auth.claims[scope]", "['read write']", False, id="scope-whole-string-no-longer"),
        pytest.param("", "request.auth.claims[roles]", "[admin]", False, id="unlisted-claim-whole"),
        pytest.param("", "request.auth.claims[roles]", "['admin dev']", True, id="unlisted-claim-string"),
        pytest.param("spaceDelimitedClaims: [roles]", "request.auth.claims[roles]", "[dev]", True, id="listed-claim-one-word"),
        pytest.param("spaceDelimitedClaims: [roles]", "request.auth.claims[roles]", "['admin dev']", False, id="listed-claim-whole-string-no-longer"),
    ],
)  # fmt: skip
def test_rules_match_each_word(extra: str, key: str, values: str, allowed: bool) -> None:
    text = request_authentication(jwks_of(KEY), ISSUER, extra) + _policy(key, values)
    snapshot = snapshot_from(text)
    attrs = RequestAttributes(headers={"authorization": f"Bearer {KEY.sign(SCOPED)}"})
    result = authenticate(attrs, snapshot.providers, lambda *_: None, NOW)
    assert evaluate(snapshot.policies, attrs, result).is_allowed is allowed


def test_parsed() -> None:
    text = request_authentication(jwks_of(KEY), ISSUER, "spaceDelimitedClaims: [roles, a.b]")
    [authn] = parse_documents(text, "f.yaml").request_authentications
    assert authn.jwt_rules[0].space_delimited_claims == ("roles", "a.b")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        pytest.param("spaceDelimitedClaims: ['']", "jwtRules[0].spaceDelimitedClaims[0]: must not be empty", id="empty-name"),
        pytest.param("spaceDelimitedClaims: roles", "jwtRules[0].spaceDelimitedClaims: must be a list of strings", id="not-a-list"),
        pytest.param("spaceDelimitedClaims: [" + ", ".join(f"c{i}" for i in range(65)) + "]", "jwtRules[0].spaceDelimitedClaims: may not have more than 64 items", id="too-many"),
    ],
)  # fmt: skip
def test_crd_validation(field: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_documents(request_authentication(jwks_of(KEY), ISSUER, field), "f.yaml")
    assert "RequestAuthentication foo/jwt: field spec." + message in str(error.value)


def test_sixty_four_claims_are_accepted() -> None:
    names = ", ".join(f"c{i}" for i in range(64))
    text = request_authentication(jwks_of(KEY), ISSUER, f"spaceDelimitedClaims: [{names}]")
    parse_documents(text, "f.yaml")

"""JWKS fields and key selection, as Envoy 1.40 answers them.

Measured against Envoy 1.40 (jwt_authn, inline JWKS): a JWK's base64url fields decode as a
token's segments do (absl::WebSafeBase64Unescape), and keys that cannot be used are skipped
without spoiling the good keys of the same document.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import parse_jwks
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature
from tests.support.tokens import claims, rsa_key

RSA = rsa_key(alg="RS256", kid="k1")


def _rsa_jwk(**changes: object) -> dict[str, Any]:
    """RSA's JWK with `changes` (a None value removes the field)."""
    jwk = {**RSA.jwk, **changes}
    return {name: value for name, value in jwk.items() if value is not None}


def _n_spaced() -> str:
    n: str = _rsa_jwk()["n"]
    return n[:10] + " " + n[10:]


def _n_padded() -> str:
    n: str = _rsa_jwk()["n"]
    return n + "=" * (-len(n) % 4)


def _status(jwks: list[dict[str, Any]], headers: dict[str, Any]) -> JwtStatus:
    parsed = parse_jwt(RSA.sign(claims(), headers=headers))
    assert isinstance(parsed, Jwt)
    return verify_signature(parsed, parse_jwks(json.dumps({"keys": jwks})))


# measured against Envoy 1.40
CASES = [
    pytest.param([_rsa_jwk(n=_n_spaced())], {}, JwtStatus.Ok, id="n-with-a-space-decodes"),
    pytest.param([_rsa_jwk(n=_n_padded())], {}, JwtStatus.Ok, id="n-padded-decodes"),
    pytest.param([_rsa_jwk(kid="bad", e=None), _rsa_jwk()], {"kid": "bad"}, JwtStatus.JwksKidAlgMismatch, id="kid-of-a-skipped-key"),
    pytest.param([{"kty": "foo", "kid": "x"}, _rsa_jwk()], {}, JwtStatus.Ok, id="unsupported-kty-skipped"),
    pytest.param([_rsa_jwk(alg="RS999")], {"kid": "k1"}, JwtStatus.JwksKidAlgMismatch, id="key-alg-unknown"),
    pytest.param([_rsa_jwk(alg="RS384")], {"kid": "k1"}, JwtStatus.JwksKidAlgMismatch, id="key-alg-differs"),
    pytest.param([_rsa_jwk(kid=5)], {"kid": "k1"}, JwtStatus.Ok, id="key-kid-not-a-string-is-no-kid"),
    pytest.param([_rsa_jwk(alg=5)], {"kid": "k1"}, JwtStatus.Ok, id="key-alg-not-a-string-is-no-alg"),
    pytest.param([_rsa_jwk(use="enc")], {"kid": "k1"}, JwtStatus.Ok, id="use-ignored"),
    pytest.param([_rsa_jwk(kid="other"), _rsa_jwk()], {"kid": "zz"}, JwtStatus.JwksKidAlgMismatch, id="kid-not-in-jwks"),
]  # fmt: skip


@pytest.mark.parametrize(("jwks", "headers", "status"), CASES)
def test_keys_as_envoy_selects_them(
    jwks: list[dict[str, Any]], headers: dict[str, Any], status: JwtStatus
) -> None:
    assert _status(jwks, headers) is status

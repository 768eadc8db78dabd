"""Signature checks and key selection, case by case as Envoy 1.40 answers them.

Measured against Envoy 1.40 (jwt_authn with an inline JWKS); see tests/unit/test_jwt_conformance.py
for how a token is parsed before it gets here.
"""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import parse_jwks
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature
from tests.support.tokens import claims, jwks_of, rsa_key

KEY = rsa_key(alg="RS256")

# measured against Envoy 1.40: every one of these well-signed tokens is accepted
CRIT_HEADERS = [
    pytest.param({"crit": ["exp"], "exp": 1}, id="crit-names-a-header"),
    pytest.param({"crit": []}, id="crit-empty"),
    pytest.param({"crit": 5}, id="crit-not-a-list"),
]


def _signed(headers: dict[str, Any]) -> Jwt:
    parsed = parse_jwt(KEY.sign(claims(), headers=headers))
    assert isinstance(parsed, Jwt)
    return parsed


@pytest.mark.parametrize("headers", CRIT_HEADERS)
def test_crit_is_ignored_as_envoy_ignores_it(headers: dict[str, Any]) -> None:
    assert verify_signature(_signed(headers), parse_jwks(jwks_of(KEY))) is JwtStatus.Ok


@pytest.mark.parametrize("headers", CRIT_HEADERS)
def test_refuse_crit_is_the_opt_in_stricter_answer(headers: dict[str, Any]) -> None:
    keys = parse_jwks(jwks_of(KEY))
    assert (
        verify_signature(_signed(headers), keys, refuse_crit=True) is JwtStatus.JwtVerificationFail
    )

"""Signature checks and key selection, case by case as Envoy 1.40 answers them.

Measured against Envoy 1.40 (jwt_authn with an inline JWKS); see tests/unit/test_jwt_conformance.py
for how a token is parsed before it gets here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import authenticate
from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import parse_jwks
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature
from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload
from extauthz.snapshot.compile import compile_generation
from tests.support.config import request_authentication
from tests.support.tokens import ISSUER, claims, jwks_of, rsa_key

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


@pytest.mark.parametrize("refuse_crit", [False, True])
def test_refuse_crit_flag_reaches_every_workloads_providers(refuse_crit: bool) -> None:
    # `serve --refuse-crit` -> ConfigLimits.refuse_crit -> compile_generation -> ProviderSet.
    config = parse_documents(
        request_authentication(jwks_of(KEY), ISSUER), "test.yaml", default_namespace="foo"
    )
    generation = compile_generation(config, "istio-system", refuse_crit=refuse_crit)
    snapshot = generation.snapshot_for(Workload("foo"))
    token = KEY.sign(claims(), headers={"crit": ["exp"], "exp": 1})
    attrs = RequestAttributes(headers={"authorization": f"Bearer {token}"})
    result = authenticate(attrs, snapshot.providers, lambda uri, now: None, int(time.time()))
    assert result.status is (JwtStatus.JwtVerificationFail if refuse_crit else JwtStatus.Ok)


def test_refuse_crit_is_a_flag_of_serve_and_validate() -> None:
    from extauthz.cli import _parser, config_limits

    args = _parser().parse_args(["serve", "--config", "x.yaml", "--refuse-crit"])
    assert config_limits(args).refuse_crit is True
    args = _parser().parse_args(["validate", "x.yaml"])
    assert config_limits(args).refuse_crit is False

"""RequestAuthentication through a real Envoy: one token per algorithm family, claim and
payload headers to the upstream, header spoofing, audiences, stripped tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from extauthz.rig.demo import Answer, http_get
from extauthz.rig.rig import Rig
from tests.support.tokens import (
    SigningKey,
    claims,
    ec_key,
    ed25519_key,
    hmac_key,
    jwks_of,
    rsa_key,
)

pytestmark = pytest.mark.e2e

ISSUER = "https://algs.example.com"
KEYS = {
    "RS256": rsa_key(kid="rs", alg="RS256"),
    "PS384": rsa_key(kid="ps", alg="PS384"),
    "ES256": ec_key(kid="es", alg="ES256"),
    "ES512": ec_key(kid="es512", alg="ES512"),
    "HS256": hmac_key(kid="hs"),
    "EdDSA": ed25519_key(kid="ed"),
}
POLICIES = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: algs, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{app: istio-ingressgateway}}}}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [shop]
    jwks: '{jwks_of(*KEYS.values())}'
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {{header: x-jwt-sub, claim: sub}}
    - {{header: x-jwt-team, claim: org.team}}
    - {{header: x-jwt-admin, claim: admin}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{app: istio-ingressgateway}}}}
  rules:
  - from:
    - source: {{requestPrincipals: ["{ISSUER}/*"]}}
"""


@pytest.fixture(scope="module")
def algs_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = Path(tmp_path_factory.mktemp("algs"))
    policies = workdir / "policies.yaml"
    policies.write_text(POLICIES)
    with Rig(workdir, gateway_policies=policies) as rig:
        yield rig


def token(key: SigningKey, **extra: object) -> str:
    base: dict[str, object] = {"iss": ISSUER, "aud": "shop", "iat": None, "exp": 4_000_000_000}
    return key.sign(claims(**{**base, "org": {"team": "blue"}, "admin": True, **extra}))


def get(rig: Rig, headers: dict[str, str]) -> Answer:
    return http_get(f"{rig.gateway_url}/api/v1/products/1", headers)


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_each_algorithm_is_accepted_and_claims_reach_the_upstream(algs_rig: Rig, alg: str) -> None:
    signed = token(KEYS[alg])
    answer = get(algs_rig, {"Authorization": f"Bearer {signed}"})
    assert answer.status == 200, answer.body
    upstream = {k.lower(): v for k, v in json.loads(answer.body)["headers"].items()}
    assert "authorization" not in upstream
    assert upstream["x-jwt-sub"] == "alice"
    assert upstream["x-jwt-team"] == "blue"
    assert upstream["x-jwt-admin"] == "true"
    payload = upstream["x-jwt-payload"]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded["iss"] == ISSUER


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_each_algorithm_rejects_a_forged_signature(algs_rig: Rig, alg: str) -> None:
    head, payload, _ = token(KEYS[alg]).split(".")
    forged_signature = token(KEYS[alg], sub="mallory").split(".")[2]
    answer = get(algs_rig, {"Authorization": f"Bearer {head}.{payload}.{forged_signature}"})
    assert (answer.status, answer.body) == (401, "Jwt verification fails")


def test_client_cannot_spoof_claim_headers(algs_rig: Rig) -> None:
    spoofed = {"x-jwt-sub": "root", "x-jwt-payload": "e30"}
    anonymous = get(algs_rig, spoofed)
    assert anonymous.status == 403  # the ALLOW policy wants a request principal
    answer = get(
        algs_rig, {**spoofed, "Authorization": f"Bearer {token(KEYS['RS256'], sub='bob')}"}
    )
    upstream = {k.lower(): v for k, v in json.loads(answer.body)["headers"].items()}
    assert upstream["x-jwt-sub"] == "bob"
    assert upstream["x-jwt-payload"] != "e30"


def test_wrong_audience_is_403_with_envoys_body(algs_rig: Rig) -> None:
    answer = get(algs_rig, {"Authorization": f"Bearer {token(KEYS['ES256'], aud='other')}"})
    assert (answer.status, answer.body) == (403, "Audiences in Jwt are not allowed")
    assert answer.headers["www-authenticate"].endswith('error="invalid_token"')


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        pytest.param("Bearer a.b", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", id="two-segments"),
        pytest.param("Bearer eyJhbGciOiJub25lIn0.e30.", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", id="alg-none-unsigned"),
        pytest.param("Bearer eyJhbGciOiJub25lIn0.e30.c2ln", "Jwt header [alg] is not supported", id="alg-none-signed"),
        pytest.param("Bearer a.e30.c2ln", "Jwt header is an invalid Base64url encoded", id="bad-base64"),
        # Envoy skips to the first JWT character after the prefix, so "!!" is not part of it.
        pytest.param("Bearer !!.e30.c2ln", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", id="junk-skipped-after-prefix"),
    ],
)  # fmt: skip
def test_malformed_tokens_get_envoys_words(algs_rig: Rig, raw: str, body: str) -> None:
    answer = get(algs_rig, {"Authorization": raw})
    assert (answer.status, answer.body) == (401, body)


def test_cors_preflight_bypasses_jwt(algs_rig: Rig) -> None:
    # Istio sets bypass_cors_preflight: the preflight is not authenticated (and the ALLOW
    # policy still applies to it, so here it is denied by RBAC, not by JWT).
    headers = {"Authorization": "Bearer garbage", "Origin": "https://app.example"}
    preflight = http_get(
        f"{algs_rig.gateway_url}/api/v1/products/1",
        {**headers, "Access-Control-Request-Method": "GET"},
        method="OPTIONS",
    )
    assert (preflight.status, preflight.body) == (403, "RBAC: access denied")
    not_preflight = http_get(f"{algs_rig.gateway_url}/api/v1/products/1", headers, method="OPTIONS")
    assert not_preflight.status == 401

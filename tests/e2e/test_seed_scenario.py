"""Istio's sample scenario through a real Envoy: the same YAML, the same 200/401/403."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from extauthz.rig.demo import http_get, matrix_cases
from extauthz.rig.rig import Rig
from extauthz.rig.tokens import invalid_tokens

pytestmark = pytest.mark.e2e

SEED_MATRIX = [case for case in matrix_cases() if case[1] in ("none", "demo")]


def _request(rig: Rig, path: str, token: str, via: str) -> tuple[str, dict[str, str]]:
    url = f"{rig.gateway_url}{path}"
    if token and via == "query":
        return f"{url}?access_token={quote(token)}", {}
    return url, ({"Authorization": f"Bearer {token}"} if token else {})


@pytest.mark.parametrize("via", ["header", "query"])
@pytest.mark.parametrize(
    ("path", "token_name", "expected"),
    SEED_MATRIX,
    ids=[f"{path}-{token}-{status}" for path, token, status in SEED_MATRIX],
)
def test_seed_matrix(rig: Rig, path: str, token_name: str, expected: int, via: str) -> None:
    token = rig.demo_token if token_name == "demo" else ""
    url, headers = _request(rig, path, token, via)
    answer = http_get(url, headers)
    assert answer.status == expected, answer.body
    if expected == 403:
        assert answer.body == "RBAC: access denied"


def test_the_matrix_is_istios() -> None:
    # Guard against the sample data drifting: the six cells of Istio's documentation.
    assert sorted(SEED_MATRIX) == sorted(
        [
            ("/productpage", "none", 200),
            ("/api/v1/products/0", "none", 403),
            ("/api/v1/products/1", "none", 403),
            ("/productpage", "demo", 200),
            ("/api/v1/products/0", "demo", 200),
            ("/api/v1/products/1", "demo", 200),
        ]
    )


@pytest.mark.parametrize("path", ["/productpage", "/api/v1/products/0", "/api/v1/products/1"])
@pytest.mark.parametrize("kind", ["tampered", "expired", "unknown-issuer"])
@pytest.mark.parametrize("via", ["header", "query"])
def test_invalid_token_is_401_like_envoy_jwt_authn(
    rig: Rig, path: str, kind: str, via: str
) -> None:
    token, body = invalid_tokens(rig.demo_token)[kind]
    url, headers = _request(rig, path, token, via)
    answer = http_get(url, headers)
    assert answer.status == 401
    assert answer.body == body
    original = url.removeprefix(f"http://127.0.0.1:{rig.ports.gateway}")
    assert answer.headers["www-authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{rig.ports.gateway}{original[:256]}", error="invalid_token"'
    )


def test_allowed_request_does_not_forward_the_token_header(rig: Rig) -> None:
    answer = http_get(
        f"{rig.gateway_url}/api/v1/products/0", {"Authorization": f"Bearer {rig.demo_token}"}
    )
    assert answer.status == 200
    seen = {k.lower() for k in json.loads(answer.body)["headers"]}
    assert "authorization" not in seen


def test_sidecar_with_jwks_uri_accepts_demo_token_and_strips_it(rig: Rig) -> None:
    answer = http_get(f"{rig.sidecar_url}/headers", {"Authorization": f"Bearer {rig.demo_token}"})
    assert answer.status == 200, answer.body
    upstream_headers = {k.lower() for k in json.loads(answer.body)["headers"]}
    assert "authorization" not in upstream_headers
    assert "host" in upstream_headers  # it really is httpbin's echo


def test_sidecar_strips_access_token_query_parameter(rig: Rig) -> None:
    answer = http_get(f"{rig.sidecar_url}/get?access_token={rig.demo_token}&keep=1")
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["args"] == {"keep": "1"}


def test_sidecar_rejects_tampered_token(rig: Rig) -> None:
    token, body = invalid_tokens(rig.demo_token)["tampered"]
    answer = http_get(f"{rig.sidecar_url}/headers", {"Authorization": f"Bearer {token}"})
    assert (answer.status, answer.body) == (401, body)


def test_extauthz_down_means_envoy_denies_and_nothing_reaches_upstream(own_rig: Rig) -> None:
    assert http_get(f"{own_rig.gateway_url}/productpage").status == 200
    before = own_rig.upstream_requests()
    own_rig.processes["extauthz-gateway"].stop()
    for path in ("/productpage", "/api/v1/products/0"):
        answer = http_get(
            f"{own_rig.gateway_url}{path}", {"Authorization": f"Bearer {own_rig.demo_token}"}
        )
        assert answer.status == 403
    assert own_rig.upstream_requests() == before

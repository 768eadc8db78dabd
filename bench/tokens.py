"""Tokens, keys and the policy files the benchmark needs.

RS256 tokens are signed with Istio's sample key (extauthz/samples/key.pem); ES256 tokens
with a P-256 key generated for the run. Configurations (b) and (d) get one JWKS holding
both public keys, so the same Envoy/extauthz serves the RS256 and the ES256 scenarios.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from extauthz.commands import tokens as cli_tokens
from extauthz.rig.rig import SAMPLES
from extauthz.rig.tokens import SAMPLE_ISSUER

ES256_KID = "bench-es256"
# Longer than extauthz's verified-token cache (10,000 entries, LRU): a pool used in order
# never hits that cache, however often it wraps around.
FRESH_POOL_SIZE = 20_000


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key as `extauthz token` loads or generates it, with the kid the benchmark pins."""

    key: cli_tokens.SigningKey
    kid: str
    jwk: dict[str, Any]  # the public half, as a JWKS entry

    @property
    def alg(self) -> str:
        return self.key.alg

    def mint(self, claims: dict[str, Any]) -> str:
        return cli_tokens.mint(self.key, claims, kid=self.kid)


def sample_rs256_key() -> SigningKey:
    [jwk] = json.loads((SAMPLES / "jwks.json").read_text())["keys"]
    key = cli_tokens.load_signing_key(SAMPLES / "key.pem", "RS256")
    return SigningKey(key, str(jwk["kid"]), dict(jwk))


def new_es256_key(kid: str = ES256_KID) -> SigningKey:
    key = cli_tokens.generate_key("ES256")
    return SigningKey(key, kid, {**key.public_jwk(), "kid": kid, "alg": "ES256"})


def demo_token() -> str:
    return (SAMPLES / "demo.jwt").read_text().strip()


def claims(index: int, now: int, lifetime: int = 24 * 3600) -> dict[str, Any]:
    """One distinct token's claims: the sample issuer and subject (so it is a request
    principal for the DENY policy), a unique `jti` so every token differs."""
    return {
        "iss": SAMPLE_ISSUER,
        "sub": SAMPLE_ISSUER,
        "iat": now,
        "exp": now + lifetime,
        "jti": f"bench-{index}",
    }


def mint_pool(key: SigningKey, count: int, now: int | None = None) -> list[str]:
    now = int(time.time()) if now is None else now
    return [key.mint(claims(i, now)) for i in range(count)]


def malformed_pool(count: int) -> list[str]:
    """Unique junk a client could send as tokens, in turn: bad base64, a header that is not
    JSON, a payload that is not JSON, two sections instead of three. Each is a 401."""

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    header = b64('{"alg":"RS256","typ":"JWT"}')
    makers = (
        lambda i: f"!!{i}!!.{b64('{}')}.c2ln",
        lambda i: f"{b64(f'not json {i}')}.{b64('{}')}.c2ln",
        lambda i: f"{header}.{b64(f'{{oops {i}')}.c2ln",
        lambda i: f"{header}.{b64(json.dumps({'n': i}))}",
    )
    return [makers[i % len(makers)](i) for i in range(count)]


def write_pool(tokens: list[str], path: Path) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path


def jwks_json(keys: list[SigningKey]) -> str:
    return json.dumps({"keys": [key.jwk for key in keys]})


def write_gateway_policies(jwks: str, path: Path) -> Path:
    """extauthz/samples/gateway-policies.yaml with its inline `jwks` replaced by `jwks`."""
    documents = list(yaml.safe_load_all((SAMPLES / "gateway-policies.yaml").read_text()))
    for document in documents:
        if document and document.get("kind") == "RequestAuthentication":
            for rule in document["spec"]["jwtRules"]:
                rule["jwks"] = jwks
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path

"""Keys generated in the tests and named tokens with one deviation each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from extauthz.commands import tokens

ISSUER = "https://issuer.example.com"
SUBJECT = "alice"
NOW = 1_800_000_000


@dataclass(frozen=True)
class SigningKey:
    alg: str
    private: Any
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """Minted as `extauthz token` mints: the jwk's kid (if any), then `headers`."""
        key = tokens.SigningKey(self.private, self.alg)
        return tokens.mint(key, claims, self.jwk.get("kid") or "", headers)


def rsa_key(kid: str = "rsa-1", alg: str = "RS256") -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return SigningKey(alg, private, {**jwk, "kid": kid})


def ec_key(kid: str = "ec-1", alg: str = "ES256") -> SigningKey:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    private = ec.generate_private_key(curve)
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return SigningKey(alg, private, {**jwk, "kid": kid})


def ed25519_key(kid: str = "ed-1") -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    return SigningKey("EdDSA", private, {**jwk, "kid": kid})


def hmac_key(kid: str = "hs-1", alg: str = "HS256") -> SigningKey:
    secret = b"0123456789abcdef0123456789abcdef"
    jwk = {"kty": "oct", "k": pyjwt.utils.base64url_encode(secret).decode(), "kid": kid}
    return SigningKey(alg, secret, jwk)


def jwks_of(*keys: SigningKey) -> str:
    return json.dumps({"keys": [key.jwk for key in keys]})


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "sub": SUBJECT, "iat": NOW, "exp": NOW + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}

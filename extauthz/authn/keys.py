"""JWKS documents parsed once into immutable key sets; PyJWT builds the public keys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from extauthz.authn.jwt import b64url_decode
from extauthz.authn.status import JwtStatus

# kty -> the alg prefixes a key of that type can verify (an alg/kty mismatch never verifies).
ALG_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",)}


class JwksError(ValueError):
    """A JWKS document that yields no usable key; the message says why."""


@dataclass(frozen=True, slots=True)
class Jwk:
    kid: str
    alg: str
    kty: str
    crv: str
    key: Any  # a cryptography public key, or the secret bytes of an `oct` key

    def can_verify(self, alg: str) -> bool:
        return alg.startswith(ALG_FAMILIES[self.kty])


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[Jwk, ...]

    def __len__(self) -> int:
        return len(self.keys)


def _public(key: Any) -> Any:
    # A JWK that carries private members still only verifies with its public half.
    return key.public_key() if hasattr(key, "public_key") else key


def _parse_key(entry: dict[str, Any]) -> Jwk:
    kty = entry.get("kty")
    if not isinstance(kty, str):
        raise JwksError("[kty] is missing in [keys]")
    if kty not in ALG_FAMILIES:
        raise JwksError(f"[kty] {kty!r} is not supported in [keys]")
    kid = entry.get("kid", "")
    alg = entry.get("alg", "")
    crv = entry.get("crv", "")
    if not isinstance(kid, str) or not isinstance(alg, str) or not isinstance(crv, str):
        raise JwksError("[kid], [alg] and [crv] must be strings")
    if alg and not alg.startswith(ALG_FAMILIES[kty]):
        raise JwksError(f"[alg] {alg!r} does not fit a key of kty {kty!r}")
    try:
        if kty == "oct":
            secret = b64url_decode(entry["k"]) if isinstance(entry.get("k"), str) else None
            if not secret:
                raise JwksError("[k] field is missing or invalid for an HMAC key")
            return Jwk(kid, alg, kty, crv, secret)
        builder: Any = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}[kty]
        return Jwk(kid, alg, kty, crv, _public(builder.from_jwk(entry)))
    except (InvalidKeyError, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, JwksError):
            raise
        raise JwksError(f"{kty} key {kid or '(no kid)'} cannot be parsed: {exc}") from exc


def parse_jwks(text: str) -> KeySet:
    """Every usable key of a JWKS document; JwksError when the document has none."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise JwksError(f"Jwks is an invalid JSON: {exc}") from exc
    if not isinstance(document, dict) or "keys" not in document:
        raise JwksError("Jwks does not have [keys] field")
    entries = document["keys"]
    if not isinstance(entries, list):
        raise JwksError("[keys] in Jwks is not an array")
    keys: list[Jwk] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"keys[{index}] is not an object")
            continue
        try:
            keys.append(_parse_key(entry))
        except JwksError as exc:
            problems.append(f"keys[{index}]: {exc}")
    if not keys:
        detail = "; ".join(problems) if problems else "[keys] is empty"
        raise JwksError(f"{JwtStatus.JwksNoValidKeys.message} ({detail})")
    return KeySet(tuple(keys))

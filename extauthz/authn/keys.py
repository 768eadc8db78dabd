"""JWKS documents parsed once into immutable key sets, with jwt_verify_lib's rules.

Accepted: a JWKS (`{"keys": [...]}`) with kty RSA, EC (P-256/384/521), oct and OKP
(Ed25519 only, as Envoy), and Google's X.509 form (`{"<kid>": "<PEM certificate>"}`).
`use` and `x5c` are ignored, as Envoy ignores them. A key that cannot be used is skipped
with a reason; a document without any usable key is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from extauthz.authn.jwt import b64url_decode

# kty -> the alg prefixes a key of that type can verify (an alg/kty mismatch never verifies).
ALG_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",)}
_CURVES: dict[str, tuple[str, ec.EllipticCurve]] = {
    "P-256": ("ES256", ec.SECP256R1()),
    "P-384": ("ES384", ec.SECP384R1()),
    "P-521": ("ES512", ec.SECP521R1()),
}
_CURVE_OF_ALG = {alg: crv for crv, (alg, _) in _CURVES.items()}
_ED25519_KEY_LENGTH = 32


class JwksError(ValueError):
    """A JWKS document (or one key of it) that cannot be used; the message says why."""


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
    skipped: tuple[str, ...] = ()  # why some entries were not usable

    def __len__(self) -> int:
        return len(self.keys)


def _b64_int(entry: dict[str, Any], name: str, kty: str) -> int:
    value = entry.get(name)
    if value is None:
        raise JwksError(f"[{name}] field is missing for a {kty} key")
    if not isinstance(value, str):
        raise JwksError(f"[{name}] field is not string for a {kty} key")
    raw = b64url_decode(value)
    if not raw:
        raise JwksError(f"[{name}] field of a {kty} key is an invalid Base64url")
    return int.from_bytes(raw, "big")


def _rsa(entry: dict[str, Any], alg: str) -> Any:
    if alg and not alg.startswith(("RS", "PS")):
        raise JwksError("[alg] is not started with [RS] or [PS] for an RSA key")
    n, e = _b64_int(entry, "n", "RSA"), _b64_int(entry, "e", "RSA")
    if e not in (3, 65537):
        raise JwksError("Jwks RSA [n] or [e] field is missing or has a parse error")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise JwksError(
            f"Jwks RSA [n] or [e] field is missing or has a parse error: {exc}"
        ) from exc


def _ec(entry: dict[str, Any], alg: str) -> tuple[str, Any]:
    if alg and not alg.startswith("ES"):
        raise JwksError("[alg] is not started with [ES] for an EC key")
    crv = entry.get("crv", "")
    if not isinstance(crv, str):
        raise JwksError("[crv] field is not string for an EC key")
    if alg and crv and _CURVE_OF_ALG.get(alg) != crv:
        raise JwksError("[crv] field specified is not compatible with [alg] for an EC key")
    crv = crv or _CURVE_OF_ALG.get(alg, "P-256" if not alg else "")
    if crv not in _CURVES:
        raise JwksError("[crv] or [alg] field is not supported for an EC key")
    x, y = _b64_int(entry, "x", "EC"), _b64_int(entry, "y", "EC")
    try:
        return crv, ec.EllipticCurvePublicNumbers(x, y, _CURVES[crv][1]).public_key()
    except ValueError as exc:
        raise JwksError("Jwks EC [x] and [y] fields have a parse error.") from exc


def _oct(entry: dict[str, Any], alg: str) -> bytes:
    if alg and alg not in ("HS256", "HS384", "HS512"):
        raise JwksError("[alg] does not start with [HS] for an HMAC key")
    k = entry.get("k")
    if k is None:
        raise JwksError("[k] field is missing for an HMAC key")
    if not isinstance(k, str):
        raise JwksError("[k] field is not string for an HMAC key")
    secret = b64url_decode(k)
    if not secret:
        raise JwksError("Jwks Oct key is an invalid Base64")
    return secret


def _okp(entry: dict[str, Any], alg: str) -> tuple[str, Any]:
    if alg and alg != "EdDSA":
        raise JwksError("[alg] is not [EdDSA] for an OKP key")
    crv = entry.get("crv")
    if crv is None:
        raise JwksError("[crv] field is missing for an OKP key")
    if not isinstance(crv, str):
        raise JwksError("[crv] field is not string for an OKP key")
    if crv != "Ed25519":
        raise JwksError("[crv] field is not supported for an OKP key")
    x = entry.get("x")
    if not isinstance(x, str):
        raise JwksError("[x] field is missing for an OKP key")
    raw = b64url_decode(x)
    if raw is None:
        raise JwksError("Jwks OKP [x] field is an invalid Base64.")
    if len(raw) != _ED25519_KEY_LENGTH:
        raise JwksError("Jwks OKP [x] field is wrong length.")
    return crv, ed25519.Ed25519PublicKey.from_public_bytes(raw)


def _parse_key(entry: dict[str, Any]) -> Jwk:
    kty = entry.get("kty")
    if kty is None:
        raise JwksError("[kty] is missing in [keys]")
    if not isinstance(kty, str):
        raise JwksError("[kty] is bad in [keys]")
    kid = entry.get("kid", "")
    alg = entry.get("alg", "")
    kid = kid if isinstance(kid, str) else ""
    alg = alg if isinstance(alg, str) else ""
    if kty == "RSA":
        return Jwk(kid, alg, kty, "", _rsa(entry, alg))
    if kty == "EC":
        crv, key = _ec(entry, alg)
        return Jwk(kid, alg, kty, crv, key)
    if kty == "oct":
        return Jwk(kid, alg, kty, "", _oct(entry, alg))
    if kty == "OKP":
        crv, key = _okp(entry, alg)
        return Jwk(kid, alg, kty, crv, key)
    raise JwksError(f"[kty] {kty!r} is not supported in [keys]")


def _x509_keys(document: dict[str, Any]) -> KeySet:
    keys = []
    for kid, pem in document.items():
        try:
            public = x509.load_pem_x509_certificate(pem.encode()).public_key()
        except ValueError as exc:
            raise JwksError(f"X509 parse pubkey fails for kid {kid!r}") from exc
        if isinstance(public, rsa.RSAPublicKey):
            keys.append(Jwk(kid, "", "RSA", "", public))
        elif isinstance(public, ec.EllipticCurvePublicKey):
            crv = {c.name: name for name, (_, c) in _CURVES.items()}.get(public.curve.name, "")
            keys.append(Jwk(kid, "", "EC", crv, public))
        else:
            raise JwksError(f"X509 certificate for kid {kid!r} has an unsupported key type")
    return KeySet(tuple(keys))


def _is_x509_map(document: dict[str, Any]) -> bool:
    # jwt_verify_lib's check: a non-empty map of non-empty strings to non-empty strings.
    return bool(document) and all(
        isinstance(value, str) and key and value for key, value in document.items()
    )


def parse_jwks(text: str) -> KeySet:
    """Every usable key of a JWKS document; JwksError when the document has none."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise JwksError(f"Jwks is an invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise JwksError("Jwks is an invalid JSON: not an object")
    if "keys" not in document:
        if _is_x509_map(document):
            return _x509_keys(document)
        raise JwksError("Jwks does not have [keys] field")
    entries = document["keys"]
    if not isinstance(entries, list):
        raise JwksError("[keys] in Jwks is not an array")
    keys: list[Jwk] = []
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            skipped.append(f"keys[{index}] is not an object")
            continue
        try:
            keys.append(_parse_key(entry))
        except JwksError as exc:
            skipped.append(f"keys[{index}]: {exc}")
    if not keys:
        detail = "; ".join(skipped) if skipped else "[keys] is empty"
        raise JwksError(f"Jwks doesn't have any valid public key ({detail})")
    return KeySet(tuple(keys), tuple(skipped))

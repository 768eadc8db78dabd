"""JWKS documents parsed once into immutable key sets, with jwt_verify_lib's rules.

Accepted: a JWKS (`{"keys": [...]}`) with kty RSA, EC (P-256/384/521), oct and OKP
(Ed25519 only, as Envoy), and Google's X.509 form (`{"<kid>": "<PEM certificate>"}`).
`use` and `x5c` are ignored, as Envoy ignores them. A key that cannot be used (nor ever verify
a signature) is skipped with a reason; a document without any usable key is an error. A key
that works but should not be trusted (a short RSA modulus or HMAC secret) is kept and named
in `KeySet.weak_keys`; `strict_keys` skips it instead.

A document may hold at most `max_keys` entries, counted before any is parsed: a token without
`kid` is checked against every key that fits its alg, so the key count bounds its CPU cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from extauthz.authn.jwt import b64url_decode

# kty -> the alg prefixes a key of that type can verify (an alg/kty mismatch never verifies).
ALG_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",)}
# JWK `crv` -> the JWS alg that signs with it, and the curve (also what `extauthz token` uses).
EC_CURVES: dict[str, tuple[str, ec.EllipticCurve]] = {
    "P-256": ("ES256", ec.SECP256R1()),
    "P-384": ("ES384", ec.SECP384R1()),
    "P-521": ("ES512", ec.SECP521R1()),
}
_CURVE_OF_ALG = {alg: crv for crv, (alg, _) in EC_CURVES.items()}
_ED25519_KEY_LENGTH = 32
DEFAULT_MAX_KEYS = 100
MIN_RSA_BITS = 2048  # NIST SP 800-57: shorter moduli are no longer considered safe
# OpenSSL refuses public-key operations on larger moduli (OPENSSL_RSA_MAX_MODULUS_BITS):
# such a key would answer 401 to every token, however well signed.
MAX_RSA_BITS = 16_384
# RFC 7518 3.2: an HMAC key must be at least as long as the hash output. A key without alg
# may be used with HS256, so it needs at least HS256's 32 bytes.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64, "": 32}


class JwksError(ValueError):
    """A JWKS document (or one key of it) that cannot be used; the message says why."""


class TooManyKeysError(JwksError):
    """A document with more keys than allowed; refused before any key is parsed."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"Jwks has {count} keys, more than the limit of {limit} (raise it with --max-jwks-keys)"
        )
        self.count = count
        self.limit = limit


class _NeverVerifies(JwksError):
    """A key that parses but with which no signature can ever verify."""


@dataclass(frozen=True, slots=True)
class Jwk:
    kid: str
    alg: str
    kty: str
    crv: str
    key: Any  # a cryptography public key, or the secret bytes of an `oct` key
    weakness: str = ""  # why it should not be trusted although it works; "" when it is fine

    def can_verify(self, alg: str) -> bool:
        return alg.startswith(ALG_FAMILIES[self.kty])

    @property
    def name(self) -> str:
        return f"kid {self.kid!r}" if self.kid else f"{self.kty} key without kid"


def _kty_of(alg: str) -> str:
    """The one key type whose keys can verify `alg` ("" for none): ALG_FAMILIES inverted."""
    for kty, prefixes in ALG_FAMILIES.items():
        if alg.startswith(prefixes):
            return kty
    return ""


@dataclass(frozen=True, slots=True)
class _Index:
    """A key set's keys grouped so that a token finds the keys that may verify it by lookups,
    whatever the number of keys it does not fit."""

    by_kid: dict[tuple[str, str, str], tuple[Jwk, ...]]  # (kid, kty, alg) -> keys
    by_kty: dict[tuple[str, str], tuple[Jwk, ...]]  # (kty, alg) -> keys, any kid
    algs_of_kid: dict[str, frozenset[str]]  # kid -> algs its keys name ("": names none)
    algs: frozenset[str]  # algs any key names ("": some key names none)
    positions: dict[int, int]  # id(key) -> its place in the set
    has_okp: bool  # whether any key is an Ed25519 one

    @classmethod
    def of(cls, keys: tuple[Jwk, ...]) -> _Index:
        by_kid: dict[tuple[str, str, str], list[Jwk]] = {}
        by_kty: dict[tuple[str, str], list[Jwk]] = {}
        algs_of_kid: dict[str, set[str]] = {}
        for jwk in keys:
            by_kid.setdefault((jwk.kid, jwk.kty, jwk.alg), []).append(jwk)
            by_kty.setdefault((jwk.kty, jwk.alg), []).append(jwk)
            algs_of_kid.setdefault(jwk.kid, set()).add(jwk.alg)
        return cls(
            {group: tuple(members) for group, members in by_kid.items()},
            {group: tuple(members) for group, members in by_kty.items()},
            {kid: frozenset(algs) for kid, algs in algs_of_kid.items()},
            frozenset(jwk.alg for jwk in keys),
            {id(jwk): place for place, jwk in enumerate(keys)},
            any(jwk.kty == "OKP" for jwk in keys),
        )


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[Jwk, ...]
    skipped: tuple[str, ...] = ()  # why some entries were not usable
    _index: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", _Index.of(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def weak_keys(self) -> tuple[str, ...]:
        """One line per key that works but should not be trusted, naming the key."""
        return tuple(f"{jwk.name}: {jwk.weakness}" for jwk in self.keys if jwk.weakness)

    def position(self, jwk: Jwk) -> int:
        """Where a key of this set stands in it (jwt_verify_lib tries keys in this order)."""
        return self._index.positions[id(jwk)]

    def first_fitting_okp(self, alg: str, kid: str) -> int | None:
        """The place of the first Ed25519 key that fits the token's kid and alg, whatever the
        token's alg: jwt_verify_lib tries such a key on any token and, when the signature is
        not 64 bytes long, stops there with JwtEd25519SignatureWrongLength (measured against
        Envoy 1.40: an HS256 or RS512 token against a JWKS whose key without alg is OKP)."""
        index = self._index
        if not index.has_okp:
            return None
        groups = (
            [index.by_kty.get(("OKP", ""), ()), index.by_kty.get(("OKP", alg), ())]
            if not kid
            else [index.by_kid.get((k, "OKP", a), ()) for k in (kid, "") for a in ("", alg)]
        )
        places = [index.positions[id(jwk)] for group in groups for jwk in group]
        return min(places, default=None)

    def has_kid_alg_match(self, alg: str, kid: str) -> bool:
        """Whether some key fits the token's kid and alg, as jwt_verify_lib's loop decides
        between JwksKidAlgMismatch and JwtVerificationFail: a key whose kid and alg fit
        counts even when its type cannot verify the alg. A key fits unless both it and the
        token name a kid and they differ, or the key names an alg other than the token's."""
        wanted = {"", alg}
        if not kid:
            return not self._index.algs.isdisjoint(wanted)
        algs_of_kid = self._index.algs_of_kid
        return not (
            algs_of_kid.get(kid, frozenset()).isdisjoint(wanted)
            and algs_of_kid.get("", frozenset()).isdisjoint(wanted)
        )

    def candidates(self, alg: str, kid: str) -> tuple[Jwk, ...]:
        """The keys that fit the token's kid and alg and whose type can verify the alg: the
        only keys worth a signature check. Found by lookups, not by trying every key."""
        kty = _kty_of(alg)
        if not kty:
            return ()
        index = self._index
        if not kid:
            return index.by_kty.get((kty, ""), ()) + index.by_kty.get((kty, alg), ())
        return (
            index.by_kid.get((kid, kty, ""), ())
            + index.by_kid.get((kid, kty, alg), ())
            + index.by_kid.get(("", kty, ""), ())
            + index.by_kid.get(("", kty, alg), ())
        )


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


def _rsa_weakness(n: int) -> str:
    """Why an RSA key with this modulus should not be trusted ("" when it is fine); JwksError
    when no signature can ever verify with it."""
    bits = n.bit_length()
    if n % 2 == 0:  # a product of two large primes is odd; OpenSSL refuses even moduli
        raise _NeverVerifies("RSA modulus is even: no signature can verify with it")
    if bits > MAX_RSA_BITS:
        raise _NeverVerifies(
            f"RSA modulus of {bits} bits is over {MAX_RSA_BITS}, the most OpenSSL verifies: "
            "no signature can verify with it"
        )
    if bits < MIN_RSA_BITS:
        return f"RSA modulus of {bits} bits is under {MIN_RSA_BITS}"
    return ""


def _rsa(entry: dict[str, Any], alg: str) -> tuple[Any, str]:
    if alg and not alg.startswith(("RS", "PS")):
        raise JwksError("[alg] is not started with [RS] or [PS] for an RSA key")
    n, e = _b64_int(entry, "n", "RSA"), _b64_int(entry, "e", "RSA")
    if e not in (3, 65537):
        raise JwksError("Jwks RSA [n] or [e] field is missing or has a parse error")
    weakness = _rsa_weakness(n)
    try:
        return rsa.RSAPublicNumbers(e, n).public_key(), weakness
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
    if crv not in EC_CURVES:
        raise JwksError("[crv] or [alg] field is not supported for an EC key")
    x, y = _b64_int(entry, "x", "EC"), _b64_int(entry, "y", "EC")
    try:
        return crv, ec.EllipticCurvePublicNumbers(x, y, EC_CURVES[crv][1]).public_key()
    except ValueError as exc:
        raise JwksError("Jwks EC [x] and [y] fields have a parse error.") from exc


def _oct(entry: dict[str, Any], alg: str) -> tuple[bytes, str]:
    if alg and alg not in _HMAC_MIN_BYTES:
        raise JwksError("[alg] does not start with [HS] for an HMAC key")
    k = entry.get("k")
    if k is None:
        raise JwksError("[k] field is missing for an HMAC key")
    if not isinstance(k, str):
        raise JwksError("[k] field is not string for an HMAC key")
    secret = b64url_decode(k)
    if secret is None:
        raise JwksError("Jwks Oct key is an invalid Base64")
    if not secret:
        raise JwksError("[k] field of an HMAC key is empty")
    least = _HMAC_MIN_BYTES[alg]
    if len(secret) < least:
        hashed = f"an {alg} hash" if alg else "an HS256 hash (the key names no alg)"
        size = f"{len(secret)} byte{'s' if len(secret) > 1 else ''}"
        return secret, f"HMAC secret of {size} is shorter than {hashed} ({least} bytes)"
    return secret, ""


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
        key, weakness = _rsa(entry, alg)
        return Jwk(kid, alg, kty, "", key, weakness)
    if kty == "EC":
        crv, key = _ec(entry, alg)
        return Jwk(kid, alg, kty, crv, key)
    if kty == "oct":
        secret, weakness = _oct(entry, alg)
        return Jwk(kid, alg, kty, "", secret, weakness)
    if kty == "OKP":
        crv, key = _okp(entry, alg)
        return Jwk(kid, alg, kty, crv, key)
    raise JwksError(f"[kty] {kty!r} is not supported in [keys]")


def _x509_key(kid: str, pem: str) -> Jwk:
    try:
        public = x509.load_pem_x509_certificate(pem.encode()).public_key()
    except ValueError as exc:
        raise JwksError(f"X509 parse pubkey fails for kid {kid!r}") from exc
    if isinstance(public, rsa.RSAPublicKey):
        return Jwk(kid, "", "RSA", "", public, _rsa_weakness(public.public_numbers().n))
    if isinstance(public, ec.EllipticCurvePublicKey):
        crv = {c.name: name for name, (_, c) in EC_CURVES.items()}.get(public.curve.name, "")
        return Jwk(kid, "", "EC", crv, public)
    raise JwksError(f"X509 certificate for kid {kid!r} has an unsupported key type")


def _is_x509_map(document: dict[str, Any]) -> bool:
    # jwt_verify_lib's check: a non-empty map of non-empty strings to non-empty strings.
    return bool(document) and all(
        isinstance(value, str) and key and value for key, value in document.items()
    )


class _Collected:
    """The keys of one document as they are parsed, and why others were left out."""

    def __init__(self, strict_keys: bool) -> None:
        self.strict_keys = strict_keys
        self.keys: list[Jwk] = []
        self.skipped: list[str] = []

    def add(self, jwk: Jwk, index: int | None = None) -> None:
        """A parsed key, at `index` in [keys] (None in the X.509 form, where kid names it)."""
        if self.strict_keys and jwk.weakness:
            where = jwk.name if index is None else f"keys[{index}] ({jwk.name})"
            self.skipped.append(f"{where}: {jwk.weakness} (--strict-keys)")
        else:
            self.keys.append(jwk)

    def key_set(self) -> KeySet:
        if not self.keys:
            detail = "; ".join(self.skipped) if self.skipped else "[keys] is empty"
            raise JwksError(f"Jwks doesn't have any valid public key ({detail})")
        return KeySet(tuple(self.keys), tuple(self.skipped))


def _x509_keys(document: dict[str, str], collected: _Collected) -> KeySet:
    for kid, pem in document.items():
        try:
            collected.add(_x509_key(kid, pem))
        except _NeverVerifies as exc:  # (a certificate that does not parse spoils them all)
            collected.skipped.append(f"kid {kid!r}: {exc}")
    return collected.key_set()


def parse_jwks(text: str, max_keys: int = DEFAULT_MAX_KEYS, strict_keys: bool = False) -> KeySet:
    """Every usable key of a JWKS document; JwksError when the document has none, and
    TooManyKeysError when it has more than `max_keys` entries. With `strict_keys`, weak keys
    are skipped too."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise JwksError(f"Jwks is an invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise JwksError("Jwks is an invalid JSON: not an object")
    collected = _Collected(strict_keys)
    if "keys" not in document:
        if not _is_x509_map(document):
            raise JwksError("Jwks does not have [keys] field")
        if len(document) > max_keys:
            raise TooManyKeysError(len(document), max_keys)
        return _x509_keys(document, collected)
    entries = document["keys"]
    if not isinstance(entries, list):
        raise JwksError("[keys] in Jwks is not an array")
    if len(entries) > max_keys:
        raise TooManyKeysError(len(entries), max_keys)
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            collected.skipped.append(f"keys[{index}] is not an object")
            continue
        try:
            collected.add(_parse_key(entry), index)
        except JwksError as exc:
            collected.skipped.append(f"keys[{index}]: {exc}")
    return collected.key_set()

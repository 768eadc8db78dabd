"""Parse a compact JWS into a `Jwt`, in the order and with the statuses of Envoy's parser.

Only the structure is read here; nothing is trusted until `verify` has checked the signature
and `authenticate` the claims.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from extauthz.authn.status import JwtStatus
from extauthz.bounded import BoundedCache
from extauthz.protobuf_json import parse_struct
from extauthz.records import record

# Algorithms Envoy's jwt_verify implements (isImplemented in jwt.cc); anything else, `none`
# included, is JwtHeaderNotImplementedAlg.
IMPLEMENTED_ALGS = frozenset(
    {
        "ES256", "ES384", "ES512",
        "HS256", "HS384", "HS512",
        "RS256", "RS384", "RS512",
        "PS256", "PS384", "PS512",
        "EdDSA",
    }
)  # fmt: skip

# Deleting these bytes leaves nothing of a segment written in the URL alphabet alone: a test
# that runs in C (a frozenset's issuperset over a 342-byte RS256 signature costs ~10 µs).
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64_WHITESPACE = b" \t\n\v\f\r"  # absl::ascii_isspace
_B64_PADS = ("=", ".")
# Pads a segment may end with, by its data length mod 4 (or none at all).
_B64_PADS_NEEDED = {0: 0, 2: 2, 3: 1}
_UINT64_LIMIT = float(2**64)
# Envoy's default limit on request headers is 60 KiB, so no longer token can reach us
# through it; refusing longer ones up front bounds the work an attacker can ask for.
MAX_TOKEN_LENGTH = 64 * 1024
# The integer claims, in the order Envoy checks them, with their two failure statuses.
_TIME_CLAIMS = (
    (
        "iat",
        JwtStatus.JwtPayloadParseErrorIatNotInteger,
        JwtStatus.JwtPayloadParseErrorIatOutOfRange,
    ),
    (
        "nbf",
        JwtStatus.JwtPayloadParseErrorNbfNotInteger,
        JwtStatus.JwtPayloadParseErrorNbfOutOfRange,
    ),
    (
        "exp",
        JwtStatus.JwtPayloadParseErrorExpNotInteger,
        JwtStatus.JwtPayloadParseErrorExpOutOfRange,
    ),
)


@record
class Jwt:
    token: str
    alg: str
    kid: str
    header: Mapping[str, Any]
    payload: Mapping[str, Any]
    iss: str
    sub: str
    audiences: tuple[str, ...]
    exp: int  # 0 when absent, as in Envoy
    nbf: int  # 0 when absent
    signing_input: bytes
    signature: bytes


def b64url_decode(segment: str) -> bytes | None:
    """A segment as absl::WebSafeBase64Unescape decodes it for Envoy (measured against Envoy
    1.40): the URL alphabet; ASCII whitespace anywhere is skipped; the data ends at the first
    pad character ('=' or '.'), after which only pads and whitespace may follow, and the pads
    must number 0 or exactly what the length calls for; unused trailing bits are ignored.
    None when invalid.

    A segment of URL-alphabet characters only (what issuers send) is decoded at once;
    anything else takes the exact reading (_b64url_decode_exact). Both answer the same
    (tests/unit/test_jwt.py checks that over generated segments)."""
    try:
        data = segment.encode("ascii")
    except UnicodeEncodeError:
        return _b64url_decode_exact(segment)
    # '+' and '/' would pass the standard alphabet's check below, pads and whitespace have
    # rules of their own: the exact reading decides those.
    if b"+" in data or b"/" in data or b"=" in data or b"." in data or len(data) % 4 == 1:
        return _b64url_decode_exact(segment)
    try:
        return binascii.a2b_base64(
            data.translate(_URL_TO_STD) + b"=" * (-len(data) % 4), strict_mode=True
        )
    except binascii.Error:  # a character outside the alphabet (whitespace, say)
        return _b64url_decode_exact(segment)


def _b64url_decode_exact(segment: str) -> bytes | None:
    cut = len(segment)
    for pad in _B64_PADS:
        found = segment.find(pad)
        if 0 <= found < cut:
            cut = found
    data = segment[:cut].encode("ascii", "replace")
    if data.translate(None, _B64URL_ALPHABET):
        data = data.translate(None, _B64_WHITESPACE)
        if data.translate(None, _B64URL_ALPHABET):
            return None
    if cut < len(segment):
        tail = segment[cut:].encode("ascii", "replace").translate(None, _B64_WHITESPACE)
        if tail.strip(b"=.") or len(tail) != _B64_PADS_NEEDED.get(len(data) % 4):
            return None
    if len(data) % 4 == 1:
        return None
    padded = data.translate(_URL_TO_STD) + b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        return None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_struct(text)


def _int_claim(
    payload: Mapping[str, Any], name: str, not_int: JwtStatus, out_of_range: JwtStatus
) -> int | JwtStatus:
    """Envoy's StructUtils::GetUInt64 (measured against Envoy 1.40): any number is a double;
    a present null is not an integer; a double outside [0, 2^64) is out of range; the rest
    is truncated (an exp of 0.5 is 0, which means none)."""
    if name not in payload:
        return 0
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return not_int
    number = float(value)
    if number < 0 or number >= _UINT64_LIMIT:
        return out_of_range
    return int(number)


def _audiences(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    if "aud" not in payload:
        return ()
    value = payload["aud"]
    if isinstance(value, str):
        return (value,)
    # A list of strings only; a present null is not a string (measured against Envoy 1.40).
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


# Real headers are a few hundred characters; longer ones (a client's invention) are parsed
# each time, so a header cache holds at most 256 x 1 KiB of client text.
MAX_CACHED_HEADERS = 256
MAX_CACHED_HEADER_CHARS = 1024
ParsedHeader = tuple[Mapping[str, Any], str, str] | JwtStatus  # (header, alg, kid) or why not
HeaderCache = BoundedCache[str, ParsedHeader]


def header_cache() -> HeaderCache:
    """A cache of parsed headers for `parse_jwt`, owned by whoever owns the token caches."""
    return BoundedCache(MAX_CACHED_HEADERS, max_entry_cost=MAX_CACHED_HEADER_CHARS)


def _parse_header(header_b64: str, headers: HeaderCache | None) -> ParsedHeader:
    if headers is None:
        return _parse_header_now(header_b64)
    parsed = headers.get(header_b64)
    if parsed is None:
        parsed = _parse_header_now(header_b64)
        headers.put(header_b64, parsed, cost=len(header_b64))  # not kept when too long
    return parsed


def _parse_header_now(header_b64: str) -> ParsedHeader:
    """(header, alg, kid). An issuer signs every token with one of a few headers, so each is
    parsed once (with a HeaderCache) and shared (read-only) by the tokens that carry it."""
    header_raw = b64url_decode(header_b64)
    if header_raw is None:
        return JwtStatus.JwtHeaderParseErrorBadBase64
    header = _json_object(header_raw)
    if header is None:
        return JwtStatus.JwtHeaderParseErrorBadJson
    alg = header.get("alg")
    if not isinstance(alg, str):
        return JwtStatus.JwtHeaderBadAlg
    if alg not in IMPLEMENTED_ALGS:
        return JwtStatus.JwtHeaderNotImplementedAlg
    kid = header.get("kid", "")
    if not isinstance(kid, str):
        return JwtStatus.JwtHeaderBadKid
    return MappingProxyType(header), alg, kid


def parse_jwt(token: str, headers: HeaderCache | None = None) -> Jwt | JwtStatus:
    """The parsed token, or the first JwtStatus Envoy's `Jwt::parseFromString` would return.
    With `headers`, a header seen before is not parsed again."""
    if len(token) > MAX_TOKEN_LENGTH:
        return JwtStatus.JwtBadFormat
    # absl::StrSplit(token, '.', SkipEmpty()): empty sections do not count, so "h.p.s." and
    # "h..p.s" are well formed, and signed as "h.p" (measured against Envoy 1.40).
    parts = [part for part in token.split(".") if part]
    if len(parts) != 3:
        return JwtStatus.JwtBadFormat
    header_b64, payload_b64, signature_b64 = parts
    parsed_header = _parse_header(header_b64, headers)
    if isinstance(parsed_header, JwtStatus):
        return parsed_header
    header, alg, kid = parsed_header

    payload_raw = b64url_decode(payload_b64)
    if payload_raw is None:
        return JwtStatus.JwtPayloadParseErrorBadBase64
    payload = _json_object(payload_raw)
    if payload is None:
        return JwtStatus.JwtPayloadParseErrorBadJson
    iss = payload.get("iss", "")
    if not isinstance(iss, str):
        return JwtStatus.JwtPayloadParseErrorIssNotString
    sub = payload.get("sub", "")
    if not isinstance(sub, str):
        return JwtStatus.JwtPayloadParseErrorSubNotString
    times: dict[str, int] = {}
    for name, not_int, out_of_range in _TIME_CLAIMS:
        parsed = _int_claim(payload, name, not_int, out_of_range)
        if isinstance(parsed, JwtStatus):
            return parsed
        times[name] = parsed
    if not isinstance(payload.get("jti", ""), str):
        return JwtStatus.JwtPayloadParseErrorJtiNotString
    audiences = _audiences(payload)
    if audiences is None:
        return JwtStatus.JwtPayloadParseErrorAudNotString

    signature = b64url_decode(signature_b64)
    if signature is None:
        return JwtStatus.JwtSignatureParseErrorBadBase64
    return Jwt(
        token=token,
        alg=alg,
        kid=kid,
        header=header,
        payload=payload,
        iss=iss,
        sub=sub,
        audiences=audiences,
        exp=times["exp"],
        nbf=times["nbf"],
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )


def check_time(jwt: Jwt, now: int, clock_skew: int = 60) -> JwtStatus:
    """Envoy's `verifyTimeConstraint`: nbf first, then exp, both with the clock skew."""
    if now + clock_skew < jwt.nbf:
        return JwtStatus.JwtNotYetValid
    if jwt.exp and now > jwt.exp + clock_skew:
        return JwtStatus.JwtExpired
    return JwtStatus.Ok

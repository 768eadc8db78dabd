"""How a token is parsed, case by case as Envoy 1.40 answers it.

Every table here was measured against Envoy 1.40 (jwt_authn with an inline JWKS, the token in a
header without prefix, signed so that only the deviation under test could fail it); the
comment on a case says what Envoy answered when that is not obvious from the id.
"""

from __future__ import annotations

import base64
import json

import pytest

from extauthz.authn.jwt import Jwt, b64url_decode, parse_jwt
from extauthz.authn.status import JwtStatus
from extauthz.protobuf_json import parse_struct


def _seg(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HEADER = _seg({"alg": "RS256", "kid": "k"})
PAYLOAD = _seg({"iss": "i", "sub": "s", "exp": 2000})
SIG = _seg(b"signature!")  # 10 bytes: 14 characters, two pads when padded


def _token(payload: str) -> str:
    return f"{HEADER}.{_seg(payload.encode())}.{SIG}"


# -- base64url (absl::WebSafeBase64Unescape) ---------------------------------------------------

# measured against Envoy 1.40
B64_CASES = [
    pytest.param("YQ", b"a", id="unpadded"),
    pytest.param("YQ==", b"a", id="padding-right-for-the-length"),
    pytest.param("YWI=", b"ab", id="one-pad-right-for-the-length"),
    pytest.param("YQ=", None, id="padding-short-for-the-length"),
    pytest.param("YQ===", None, id="padding-too-long"),
    pytest.param("YWJj=", None, id="padding-where-none-is-due"),
    pytest.param("YWJj====", None, id="four-pads"),
    pytest.param("Y=Q", None, id="pad-in-the-middle"),
    pytest.param("Y Q", b"a", id="space-inside-skipped"),
    pytest.param("Y\tQ", b"a", id="tab-inside-skipped"),
    pytest.param("YQ =\t=", b"a", id="whitespace-among-pads-skipped"),
    pytest.param("YQ== x", None, id="data-after-pads"),
    pytest.param("YR", b"a", id="non-canonical-trailing-bits-ignored"),
    pytest.param("-_8", b"\xfb\xff", id="url-alphabet"),
    pytest.param("+/8", None, id="standard-alphabet"),
    pytest.param("Y*Q", None, id="star"),
    pytest.param("YQ,", None, id="comma-at-end"),
    pytest.param("Y", None, id="one-character-left-over"),
    pytest.param("YWJjZ", None, id="five-characters"),
]


@pytest.mark.parametrize(("segment", "expected"), B64_CASES)
def test_base64url_as_absl_decodes_it(segment: str, expected: bytes | None) -> None:
    assert b64url_decode(segment) == expected


def test_signing_input_keeps_the_segments_as_sent() -> None:
    # A space inside the header segment decodes, but the signature covers the text as sent:
    # a token signed without the space fails verification (Envoy: "Jwt verification fails").
    spaced = f"{HEADER[:3]} {HEADER[3:]}"
    parsed = parse_jwt(f"{spaced}.{PAYLOAD}.{SIG}")
    assert isinstance(parsed, Jwt)
    assert parsed.signing_input == f"{spaced}.{PAYLOAD}".encode()


# -- sections (absl::StrSplit with SkipEmpty) --------------------------------------------------

# measured against Envoy 1.40: empty sections do not count, and the signed text is "h.p"
SECTION_CASES = [
    pytest.param(f"{HEADER}.{PAYLOAD}.{SIG}.", JwtStatus.Ok, id="trailing-dot"),
    pytest.param(f".{HEADER}.{PAYLOAD}.{SIG}", JwtStatus.Ok, id="leading-dot"),
    pytest.param(f"{HEADER}..{PAYLOAD}.{SIG}", JwtStatus.Ok, id="double-dot-after-header"),
    pytest.param(f"{HEADER}.{PAYLOAD}..{SIG}", JwtStatus.Ok, id="double-dot-before-signature"),
    pytest.param(f"..{HEADER}.{PAYLOAD}.{SIG}..", JwtStatus.Ok, id="dots-around"),
    pytest.param(f"{HEADER}.{PAYLOAD}.{SIG}.x", JwtStatus.JwtBadFormat, id="fourth-section"),
    pytest.param(f"{HEADER}.{PAYLOAD}.", JwtStatus.JwtBadFormat, id="empty-signature"),
    pytest.param(f"{HEADER}..{SIG}", JwtStatus.JwtBadFormat, id="empty-payload"),
    pytest.param(f".{PAYLOAD}.{SIG}", JwtStatus.JwtBadFormat, id="empty-header"),
    pytest.param("..", JwtStatus.JwtBadFormat, id="dots-only"),
    pytest.param(f"{HEADER}.{PAYLOAD}.{SIG}==", JwtStatus.Ok, id="signature-padded"),
    pytest.param(f"{HEADER}.{PAYLOAD}.{SIG}=", JwtStatus.JwtSignatureParseErrorBadBase64, id="signature-one-pad-short"),
    pytest.param(f"{HEADER}.{PAYLOAD}.{SIG} junk", JwtStatus.Ok, id="signature-space-junk-decodes"),  # then: verification fails
]  # fmt: skip


@pytest.mark.parametrize(("token", "status"), SECTION_CASES)
def test_sections_as_envoy_splits_them(token: str, status: JwtStatus) -> None:
    parsed = parse_jwt(token)
    if status is JwtStatus.Ok:
        assert isinstance(parsed, Jwt)
        assert parsed.signing_input == f"{HEADER}.{PAYLOAD}".encode()
    else:
        assert parsed is status


# -- JSON (protobuf's parser into a Struct, legacy syntax) -------------------------------------

# measured against Envoy 1.40 (header and payload alike); None: "invalid JSON"
JSON_CASES = [
    pytest.param('{"a":1}', {"a": 1}, id="plain"),
    pytest.param(" \r\n\t{}\n", {}, id="whitespace-around"),
    pytest.param("null", {}, id="top-level-null-is-an-empty-struct"),
    pytest.param(" null ", {}, id="top-level-null-with-whitespace"),
    pytest.param("[]", None, id="array"),
    pytest.param('"x"', None, id="string"),
    pytest.param("1", None, id="number"),
    pytest.param("true", None, id="boolean"),
    pytest.param(" ", None, id="whitespace-only"),
    pytest.param('{"a":1,"a":2}', None, id="duplicate-key"),
    pytest.param('{"o":{"a":1,"a":1}}', None, id="duplicate-key-nested"),
    pytest.param('{"a":1,}', {"a": 1}, id="trailing-comma-object"),
    pytest.param('{"a":[1,]}', {"a": [1]}, id="trailing-comma-array"),
    pytest.param('{"a":[1,,]}', None, id="two-commas"),
    pytest.param("{,}", None, id="comma-only"),
    pytest.param("{'a':'b'}", {"a": "b"}, id="single-quotes"),
    pytest.param("{'a':'x\"y'}", {"a": 'x"y'}, id="double-quote-inside-single"),
    pytest.param("{\"a\":'b\"}", None, id="mismatched-quotes"),
    pytest.param("{a_1:'b'}", {"a_1": "b"}, id="bare-word-key"),
    pytest.param("{1a:'b'}", None, id="bare-word-key-starting-with-digit"),
    pytest.param("{null:'b'}", None, id="bare-word-key-null"),
    pytest.param('{"a":"\\U0041"}', {"a": "A"}, id="capital-U-escape"),
    pytest.param('{"a":"\\\'"}', {"a": "'"}, id="escaped-single-quote"),
    pytest.param('{"a":"x\ny\u0000"}', {"a": "x\ny\u0000"}, id="raw-control-characters"),
    pytest.param('{"a":"\\x41"}', None, id="unknown-escape"),
    pytest.param('{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}, id="surrogate-pair"),
    pytest.param('{"a":"\\ud800"}', None, id="lone-high-surrogate"),
    pytest.param('{"a":"\\udc00"}', None, id="lone-low-surrogate"),
    pytest.param('{"a":"\\udbff\\udfff"}', None, id="pair-making-U+10FFFF"),
    pytest.param('{"a":1e400}', None, id="number-beyond-double"),
    pytest.param('{"a":' + "9" * 400 + "}", None, id="integer-beyond-double"),
    pytest.param('{"a":' + "9" * 309 + "}", None, id="integer-of-309-digits-beyond-double"),
    pytest.param('{"a":' + "9" * 294 + "}", {"a": int("9" * 294)}, id="integer-in-a-short-text"),
    pytest.param('{"a":1e300}', {"a": 1e300}, id="large-double"),
    pytest.param('{"a":NaN}', None, id="NaN"),
    pytest.param('{"a":Infinity}', None, id="Infinity"),
    pytest.param('{"a":01}', None, id="leading-zero"),
    pytest.param('{"a":+1}', None, id="plus-sign"),
    pytest.param('{"a":1.}', None, id="trailing-period"),
    pytest.param('{"a":.5}', None, id="leading-period"),
    pytest.param('{"a":1.e5}', None, id="period-before-exponent"),
    pytest.param('{"a":0x10}', None, id="hex"),
    pytest.param('{"a":tru}', None, id="bad-literal"),
    pytest.param('{"a":True}', None, id="capitalised-literal"),
    pytest.param('{"a":1}{}', None, id="two-objects"),
    pytest.param('{"a":1}x', None, id="trailing-garbage"),
    pytest.param('{"a" 1}', None, id="colon-missing"),
    pytest.param('{"a":1,/*c*/"b":2}', None, id="comment"),
    pytest.param('\ufeff{"a":1}', None, id="byte-order-mark"),
    pytest.param('{"a":1,\x0b"b":2}', None, id="vertical-tab-is-not-whitespace"),
    pytest.param('{"a":' + "[" * 99 + "]" * 99 + "}", {"a": json.loads("[" * 99 + "]" * 99)}, id="100-nested"),
    pytest.param('{"a":' + "[" * 100 + "]" * 100 + "}", None, id="101-nested"),
    pytest.param('{"a":' + '{"b":' * 100 + "1" + "}" * 100 + "}", None, id="101-nested-objects"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), JSON_CASES)
def test_json_as_protobuf_reads_a_struct(text: str, expected: object) -> None:
    assert parse_struct(text) == expected


def test_the_legacy_parser_agrees_with_the_fast_one_on_plain_json() -> None:
    from extauthz.protobuf_json import _LegacyParser

    text = '{"a": [1, -2.5e3, "x\\u00e9\\n", true, false, null, {}], "b": {"c": -0}}'
    assert _LegacyParser(text).document() == json.loads(text)


def test_invalid_utf8_is_invalid_json() -> None:
    overlong = _seg(b'{"iss":"\xc0\xaf"}')
    token = f"{HEADER}.{overlong}.{SIG}"
    assert parse_jwt(token) is JwtStatus.JwtPayloadParseErrorBadJson


def test_header_null_has_no_alg() -> None:
    assert parse_jwt(f"{_seg(b'null')}.{PAYLOAD}.{SIG}") is JwtStatus.JwtHeaderBadAlg


# -- claim types (StructUtils) -----------------------------------------------------------------

U64 = 2**64
# measured against Envoy 1.40: (payload JSON, parse status, exp as Envoy reads it)
CLAIM_CASES = [
    pytest.param("null", JwtStatus.Ok, 0, id="payload-null-no-claims"),  # then: issuer not configured
    pytest.param('{"aud":null}', JwtStatus.JwtPayloadParseErrorAudNotString, 0, id="aud-null"),
    pytest.param('{"aud":[]}', JwtStatus.Ok, 0, id="aud-empty-list"),  # then: audiences not allowed
    pytest.param('{"aud":["a",7]}', JwtStatus.JwtPayloadParseErrorAudNotString, 0, id="aud-list-with-number"),
    pytest.param('{"aud":[["a"]]}', JwtStatus.JwtPayloadParseErrorAudNotString, 0, id="aud-nested-list"),
    pytest.param('{"aud":{"a":"b"}}', JwtStatus.JwtPayloadParseErrorAudNotString, 0, id="aud-object"),
    pytest.param('{"iss":null}', JwtStatus.JwtPayloadParseErrorIssNotString, 0, id="iss-null"),
    pytest.param('{"iss":["i"]}', JwtStatus.JwtPayloadParseErrorIssNotString, 0, id="iss-list"),
    pytest.param('{"sub":null}', JwtStatus.JwtPayloadParseErrorSubNotString, 0, id="sub-null"),
    pytest.param('{"jti":null}', JwtStatus.JwtPayloadParseErrorJtiNotString, 0, id="jti-null"),
    pytest.param('{"exp":null}', JwtStatus.JwtPayloadParseErrorExpNotInteger, 0, id="exp-null"),
    pytest.param('{"nbf":null}', JwtStatus.JwtPayloadParseErrorNbfNotInteger, 0, id="nbf-null"),
    pytest.param('{"iat":null}', JwtStatus.JwtPayloadParseErrorIatNotInteger, 0, id="iat-null"),
    pytest.param('{"exp":"2000"}', JwtStatus.JwtPayloadParseErrorExpNotInteger, 0, id="exp-string"),
    pytest.param('{"exp":true}', JwtStatus.JwtPayloadParseErrorExpNotInteger, 0, id="exp-boolean"),
    pytest.param('{"exp":[2000]}', JwtStatus.JwtPayloadParseErrorExpNotInteger, 0, id="exp-list"),
    pytest.param('{"exp":0}', JwtStatus.Ok, 0, id="exp-zero-is-none"),
    pytest.param('{"exp":-0}', JwtStatus.Ok, 0, id="exp-minus-zero"),
    pytest.param('{"exp":0.5}', JwtStatus.Ok, 0, id="exp-half-truncated-to-none"),
    pytest.param('{"exp":1.5}', JwtStatus.Ok, 1, id="exp-truncated"),  # then: expired
    pytest.param('{"exp":1e10}', JwtStatus.Ok, 10**10, id="exp-exponent"),
    pytest.param('{"exp":-0.5}', JwtStatus.JwtPayloadParseErrorExpOutOfRange, 0, id="exp-negative-fraction"),
    pytest.param('{"exp":-1}', JwtStatus.JwtPayloadParseErrorExpOutOfRange, 0, id="exp-negative"),
    pytest.param('{"exp":9223372036854775808}', JwtStatus.Ok, 2**63, id="exp-2^63"),
    pytest.param('{"exp":18000000000000000000}', JwtStatus.Ok, 18000000000000000000, id="exp-1.8e19"),
    pytest.param('{"exp":18446744073709551615}', JwtStatus.JwtPayloadParseErrorExpOutOfRange, 0, id="exp-2^64-1-is-2^64-as-double"),
    pytest.param('{"exp":18446744073709551616}', JwtStatus.JwtPayloadParseErrorExpOutOfRange, 0, id="exp-2^64"),
    pytest.param('{"exp":1e300}', JwtStatus.JwtPayloadParseErrorExpOutOfRange, 0, id="exp-1e300"),
    pytest.param('{"exp":1e400}', JwtStatus.JwtPayloadParseErrorBadJson, 0, id="exp-beyond-double"),
    pytest.param('{"nbf":-1}', JwtStatus.JwtPayloadParseErrorNbfOutOfRange, 0, id="nbf-negative"),
    pytest.param('{"nbf":1.5}', JwtStatus.Ok, 0, id="nbf-fraction"),
    pytest.param('{"iat":"1"}', JwtStatus.JwtPayloadParseErrorIatNotInteger, 0, id="iat-string"),
    pytest.param('{"iat":18446744073709551616}', JwtStatus.JwtPayloadParseErrorIatOutOfRange, 0, id="iat-2^64"),
    pytest.param('{"iat":1.5}', JwtStatus.Ok, 0, id="iat-fraction"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "status", "exp"), CLAIM_CASES)
def test_claim_types_as_envoy_reads_them(payload: str, status: JwtStatus, exp: int) -> None:
    parsed = parse_jwt(_token(payload))
    if status is JwtStatus.Ok:
        assert isinstance(parsed, Jwt)
        assert parsed.exp == exp
    else:
        assert parsed is status
    assert exp < U64

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.authn.jwt import (
    MAX_CACHED_HEADER_CHARS,
    MAX_CACHED_HEADERS,
    Jwt,
    _b64url_decode_exact,
    b64url_decode,
    check_time,
    header_cache,
    parse_jwt,
)
from extauthz.authn.status import JwtStatus


def _seg(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD_HEADER = _seg({"alg": "RS256", "kid": "k"})
GOOD_PAYLOAD = _seg({"iss": "i", "sub": "s", "exp": 2000, "aud": ["a", "b"]})
SIG = _seg(b"signature")


@pytest.mark.parametrize(
    ("token", "status"),
    [
        pytest.param("a.b", JwtStatus.JwtBadFormat, id="two-segments"),
        pytest.param("a.b.c.d.e", JwtStatus.JwtBadFormat, id="jwe-five-segments"),
        pytest.param(f"{GOOD_HEADER}.{GOOD_PAYLOAD}.", JwtStatus.JwtBadFormat, id="stripped-signature"),
        pytest.param(f"{GOOD_HEADER}..{SIG}", JwtStatus.JwtBadFormat, id="empty-payload"),
        pytest.param(f"!!.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderParseErrorBadBase64, id="header-not-base64url"),
        pytest.param(f"{_seg(b'[1]')}.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderParseErrorBadJson, id="header-not-object"),
        pytest.param(f"{_seg(b'{')}.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderParseErrorBadJson, id="header-bad-json"),
        pytest.param(f"{_seg({'kid': 'k'})}.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderBadAlg, id="no-alg"),
        pytest.param(f"{_seg({'alg': 5})}.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderBadAlg, id="alg-not-string"),
        pytest.param(f"{_seg({'alg': 'none'})}.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderNotImplementedAlg, id="alg-none"),
        pytest.param(f"{_seg({'alg': 'RS256', 'kid': 1})}.{GOOD_PAYLOAD}.{SIG}", JwtStatus.JwtHeaderBadKid, id="kid-not-string"),
        pytest.param(f"{GOOD_HEADER}.%%%.{SIG}", JwtStatus.JwtPayloadParseErrorBadBase64, id="payload-not-base64url"),
        pytest.param(f"{GOOD_HEADER}.{_seg(b'[]')}.{SIG}", JwtStatus.JwtPayloadParseErrorBadJson, id="payload-not-object"),
        pytest.param(f"{GOOD_HEADER}.{_seg({'iss': 1})}.{SIG}", JwtStatus.JwtPayloadParseErrorIssNotString, id="iss-not-string"),
        pytest.param(f"{GOOD_HEADER}.{_seg({'sub': []})}.{SIG}", JwtStatus.JwtPayloadParseErrorSubNotString, id="sub-not-string"),
        pytest.param(f"{GOOD_HEADER}.{_seg({'exp': 'soon'})}.{SIG}", JwtStatus.JwtPayloadParseErrorExpNotInteger, id="exp-not-integer"),
        pytest.param(f"{GOOD_HEADER}.{_seg({'exp': -1})}.{SIG}", JwtStatus.JwtPayloadParseErrorExpOutOfRange, id="exp-negative"),
        pytest.param(f"{GOOD_HEADER}.{_seg({'nbf': True})}.{SIG}", JwtStatus.JwtPayloadParseErrorNbfNotInteger, id="nbf-bool"),
        pytest.param(f"{GOOD_HEADER}.{_seg({'aud': [1]})}.{SIG}", JwtStatus.JwtPayloadParseErrorAudNotString, id="aud-list-of-int"),
        pytest.param(f"{GOOD_HEADER}.{GOOD_PAYLOAD}.a+b/", JwtStatus.JwtSignatureParseErrorBadBase64, id="signature-std-base64"),
    ],
)  # fmt: skip
def test_parse_failures_use_envoys_status(token: str, status: JwtStatus) -> None:
    assert parse_jwt(token) is status


def test_parse_good_token() -> None:
    parsed = parse_jwt(f"{GOOD_HEADER}.{GOOD_PAYLOAD}.{SIG}")
    assert isinstance(parsed, Jwt)
    assert (parsed.alg, parsed.kid, parsed.iss, parsed.sub) == ("RS256", "k", "i", "s")
    assert parsed.audiences == ("a", "b")
    assert parsed.exp == 2000 and parsed.nbf == 0
    assert parsed.signature == b"signature"
    assert parsed.signing_input == f"{GOOD_HEADER}.{GOOD_PAYLOAD}".encode()


@pytest.mark.parametrize(
    ("segment", "expected"),
    [("YQ", b"a"), ("YQ==", b"a"), ("-_8", b"\xfb\xff"), ("Y", None), ("+/8", None)],
)
def test_b64url_decode_is_strict(segment: str, expected: bytes | None) -> None:
    assert b64url_decode(segment) == expected


def _with_times(exp: int = 0, nbf: int = 0) -> Jwt:
    parsed = parse_jwt(f"{GOOD_HEADER}.{_seg({'exp': exp, 'nbf': nbf})}.{SIG}")
    assert isinstance(parsed, Jwt)
    return parsed


@pytest.mark.parametrize(
    ("exp", "nbf", "now", "status"),
    [
        pytest.param(1000, 0, 1000, JwtStatus.Ok, id="at-exp"),
        pytest.param(1000, 0, 1060, JwtStatus.Ok, id="expired-within-skew"),
        pytest.param(1000, 0, 1061, JwtStatus.JwtExpired, id="expired-beyond-skew"),
        pytest.param(0, 0, 10**12, JwtStatus.Ok, id="no-exp-never-expires"),
        pytest.param(0, 2000, 1940, JwtStatus.Ok, id="nbf-within-skew"),
        pytest.param(0, 2000, 1939, JwtStatus.JwtNotYetValid, id="nbf-beyond-skew"),
        pytest.param(1000, 5000, 3000, JwtStatus.JwtNotYetValid, id="nbf-checked-before-exp"),
    ],
)
def test_time_constraints_with_60s_skew(exp: int, nbf: int, now: int, status: JwtStatus) -> None:
    assert check_time(_with_times(exp, nbf), now) is status


def test_statuses_carry_envoys_words_and_http_status() -> None:
    assert JwtStatus.JwtVerificationFail.message == "Jwt verification fails"
    assert JwtStatus.JwtExpired.message == "Jwt is expired"
    assert JwtStatus.JwtUnknownIssuer.message == "Jwt issuer is not configured"
    assert JwtStatus.JwtAudienceNotAllowed.http_status == 403
    assert JwtStatus.JwtExpired.http_status == 401


def test_a_header_cache_shares_parsed_headers_and_stays_bounded() -> None:
    headers = header_cache()
    first = parse_jwt(f"{GOOD_HEADER}.{GOOD_PAYLOAD}.{SIG}", headers)
    second = parse_jwt(f"{GOOD_HEADER}.{_seg({'sub': 'other'})}.{SIG}", headers)
    assert isinstance(first, Jwt) and isinstance(second, Jwt)
    assert first.header is second.header  # parsed once, shared read-only
    assert parse_jwt(f"{_seg(b'{')}.{GOOD_PAYLOAD}.{SIG}", headers) is (
        JwtStatus.JwtHeaderParseErrorBadJson
    )
    long_header = _seg({"alg": "RS256", "kid": "k" * MAX_CACHED_HEADER_CHARS})
    assert isinstance(parse_jwt(f"{long_header}.{GOOD_PAYLOAD}.{SIG}", headers), Jwt)
    assert long_header not in headers  # a client's long invention is parsed each time
    for kid in range(MAX_CACHED_HEADERS + 10):
        parse_jwt(f"{_seg({'alg': 'RS256', 'kid': str(kid)})}.{GOOD_PAYLOAD}.{SIG}", headers)
    assert len(headers) == MAX_CACHED_HEADERS


def test_without_a_header_cache_every_header_is_parsed_anew() -> None:
    token = f"{GOOD_HEADER}.{GOOD_PAYLOAD}.{SIG}"
    first, second = parse_jwt(token), parse_jwt(token)
    assert isinstance(first, Jwt) and isinstance(second, Jwt)
    assert first.header == second.header and first.header is not second.header


_B64_CHARS = "ABCXYZabcxyz0189-_+/=. \t\n\r\v\fé!"


@settings(max_examples=2000, derandomize=True, deadline=None)
@given(
    segment=st.one_of(
        st.text(alphabet=_B64_CHARS, max_size=24),
        st.binary(max_size=18).map(lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")),
    )
)
def test_b64url_decode_answers_as_the_exact_reading(segment: str) -> None:
    """The shortcut for plain URL-alphabet segments never answers otherwise than the
    exact reading of absl's rules, whatever the segment holds."""
    assert b64url_decode(segment) == _b64url_decode_exact(segment)

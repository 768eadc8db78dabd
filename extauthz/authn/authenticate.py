"""Authenticate one request: find its tokens, verify each one, name the request principal.

Istio configures Envoy's jwt_authn with one provider per JWTRule and `allow_missing`: a
request without a token passes with no identity, and a present token must be valid.
The checks run in Envoy's order: parse, issuer, time (60 s skew), audience, key, signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import VerifiedTokenCache
from extauthz.authn.extract import FoundToken, extract_tokens
from extauthz.authn.jwt import Jwt, check_time, parse_jwt
from extauthz.authn.keys import KeySet
from extauthz.authn.providers import JwtProvider, ProviderSet
from extauthz.authn.result import ANONYMOUS, AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature

CLOCK_SKEW_SECONDS = 60
KeyLookup = Callable[[str], KeySet | None]


def _claim_header_value(value: Any) -> str:
    # Envoy's claim_to_headers writes strings, numbers and booleans; other types are skipped.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and value >= 0 else repr(value)
    if isinstance(value, str):
        return value
    return ""


def _nested_claim(payload: Any, claim: str) -> Any:
    value = payload
    for step in claim.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def _verify_one(
    found: FoundToken,
    providers: ProviderSet,
    remote_keys: KeyLookup,
    now: int,
    cache: VerifiedTokenCache | None,
) -> tuple[JwtStatus, Jwt | None, JwtProvider | None]:
    parsed = parse_jwt(found.token)
    if isinstance(parsed, JwtStatus):
        return parsed, None, None
    provider = providers.by_issuer(parsed.iss, found.location)
    if provider is None:
        return JwtStatus.JwtUnknownIssuer, parsed, None
    time_status = check_time(parsed, now, CLOCK_SKEW_SECONDS)
    if time_status is not JwtStatus.Ok:
        return time_status, parsed, provider
    if not provider.allows_audiences(parsed.audiences):
        return JwtStatus.JwtAudienceNotAllowed, parsed, provider
    keys = provider.inline_keys or (remote_keys(provider.jwks_uri) if provider.jwks_uri else None)
    if keys is None:
        # No key set was ever fetched for this issuer: fail closed, as Envoy does.
        return JwtStatus.JwksFetchFail, parsed, provider
    if cache is not None and cache.get(found.token, keys) is not None:
        return JwtStatus.Ok, parsed, provider
    status = verify_signature(parsed, keys)
    if status is JwtStatus.Ok and cache is not None:
        cache.put(found.token, keys, parsed)
    return status, parsed, provider


def authenticate(
    attrs: RequestAttributes,
    providers: ProviderSet,
    remote_keys: KeyLookup,
    now: int,
    cache: VerifiedTokenCache | None = None,
) -> AuthnResult:
    if not providers.providers:
        return ANONYMOUS
    tokens = extract_tokens(attrs, providers.locations)
    if not tokens:
        return AuthnResult(JwtStatus.Ok, headers_to_remove=providers.output_headers)
    # Every token present must be valid: a good token must not carry a bad one past us.
    accepted: list[tuple[FoundToken, Jwt, JwtProvider]] = []
    for found in tokens:
        status, jwt, provider = _verify_one(found, providers, remote_keys, now, cache)
        if status is not JwtStatus.Ok:
            return AuthnResult(
                status,
                issuer=jwt.iss if jwt else "",
                subject=jwt.sub if jwt else "",
                kid=jwt.kid if jwt else "",
            )
        assert jwt is not None and provider is not None
        accepted.append((found, jwt, provider))
    return _accepted(accepted, providers)


def _accepted(
    accepted: list[tuple[FoundToken, Jwt, JwtProvider]], providers: ProviderSet
) -> AuthnResult:
    remove_headers = list(providers.output_headers)
    remove_params: list[str] = []
    set_headers: list[tuple[str, str]] = []
    for found, token_jwt, provider in accepted:
        if not provider.forward_original_token:
            # Envoy drops the whole header the token came from. It leaves a query parameter
            # in place; we remove that too, so `forwardOriginalToken: false` means what it says.
            if found.location.kind == "header":
                remove_headers.append(found.location.name)
            elif found.location.kind == "param":
                remove_params.append(found.location.name)
        if provider.output_payload_to_header:
            payload = token_jwt.token.split(".")[1]
            set_headers.append((provider.output_payload_to_header, payload))
        for mapping in provider.output_claim_to_headers:
            value = _claim_header_value(_nested_claim(token_jwt.payload, mapping.claim))
            if value:
                set_headers.append((mapping.header, value))
    found, jwt, _ = accepted[0]
    return AuthnResult(
        JwtStatus.Ok,
        principal=f"{jwt.iss}/{jwt.sub}",
        claims=jwt.payload,
        issuer=jwt.iss,
        subject=jwt.sub,
        kid=jwt.kid,
        headers_to_remove=tuple(dict.fromkeys(remove_headers)),
        params_to_remove=tuple(dict.fromkeys(remove_params)),
        headers_to_set=tuple(set_headers),
    )

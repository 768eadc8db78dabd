"""Authenticate one request as Istio's Envoy does, and name its request principal.

Istio turns the JWTRules that apply to a workload into Envoy jwt_authn providers P1..Pn and
one requirement (pilot's policy applier):

    n = 1:  OR{ P1, allow_missing(P1) }
    n > 1:  OR{ P1, ..., Pn, AND{ OR{P1, allow_missing(P1)}, ..., OR{Pn, allow_missing(Pn)} } }

A provider requirement Pi passes when the request carries tokens at Pi's locations and every
one of them is valid for Pi. allow_missing(Pi) passes when there is no token at Pi's
locations; otherwise it reports the status of the first token found there (Envoy verifies
them from the last to the first and keeps the last outcome). An OR passes when a child
passes, else reports its last child's status; an AND reports its first failure. So a
request without tokens passes with no identity, and a present token must be valid.

Each token is checked in Envoy's order: parse, issuer, time (60 s skew), audience, key,
signature. CORS preflight requests bypass JWT checks (Istio sets bypass_cors_preflight).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import VerifiedTokenCache
from extauthz.authn.extract import FoundToken, extract_tokens
from extauthz.authn.jwt import Jwt, check_time, parse_jwt
from extauthz.authn.providers import JwtProvider, ProviderSet
from extauthz.authn.result import ANONYMOUS, AuthnResult, KeyLookup, Validity
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature

CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Checked:
    """One token checked against one provider."""

    found: FoundToken
    provider: JwtProvider
    status: JwtStatus
    jwt: Jwt | None


def check_token(
    found: FoundToken,
    provider: JwtProvider,
    remote_keys: KeyLookup,
    now: int,
    cache: VerifiedTokenCache | None = None,
    parsed_here: dict[str, Jwt | JwtStatus] | None = None,
) -> Checked:
    """`parsed_here`: tokens this request already parsed (several rules reading the same
    header see the same token; it is parsed once)."""
    seen = cache.lookup(found.token) if cache is not None else None
    rejected = cache.rejected(found.token) if cache is not None and seen is None else None
    parsed: Jwt | JwtStatus | None
    if seen is not None:
        parsed = seen[1]
    elif rejected is not None:
        parsed = rejected[1]
    else:
        parsed = parsed_here.get(found.token) if parsed_here is not None else None
        if parsed is None:
            parsed = parse_jwt(found.token)
            if parsed_here is not None:
                parsed_here[found.token] = parsed
    if isinstance(parsed, JwtStatus):
        return Checked(found, provider, parsed, None)
    jwt = parsed

    def done(status: JwtStatus) -> Checked:
        return Checked(found, provider, status, jwt)

    if not provider.allows_issuer(jwt.iss):
        return done(JwtStatus.JwtUnknownIssuer)
    time_status = check_time(jwt, now, CLOCK_SKEW_SECONDS)
    if time_status is not JwtStatus.Ok:
        return done(time_status)
    if not provider.allows_audiences(jwt.audiences):
        return done(JwtStatus.JwtAudienceNotAllowed)
    keys = provider.inline_keys or (remote_keys(provider.jwks_uri) if provider.jwks_uri else None)
    if keys is None:
        # No key set was ever fetched for this issuer: fail closed, as Envoy does.
        return done(JwtStatus.JwksFetchFail)
    if seen is not None and seen[0] is keys:
        return done(JwtStatus.Ok)  # this exact key set verified this exact token before
    if rejected is not None and rejected[0] is keys:
        return done(rejected[2])  # ... or found its signature wrong
    status = verify_signature(jwt, keys)
    if cache is not None:
        if status is JwtStatus.Ok:
            cache.put(found.token, keys, jwt)
        elif status is JwtStatus.JwtVerificationFail:
            # A key with its kid and alg exists and the signature is wrong: final for this
            # key set. (An unknown kid is not kept: fresh keys may cure it.)
            cache.put_rejected(found.token, keys, jwt, status)
    return done(status)


def is_cors_preflight(attrs: RequestAttributes) -> bool:
    headers = attrs.headers
    return (
        attrs.method == "OPTIONS"
        and bool(headers.get("origin"))
        and bool(headers.get("access-control-request-method"))
    )


def authenticate(
    attrs: RequestAttributes,
    providers: ProviderSet,
    remote_keys: KeyLookup,
    now: int,
    cache: VerifiedTokenCache | None = None,
) -> AuthnResult:
    if not providers.providers:
        return ANONYMOUS  # no RequestAuthentication: tokens are not looked at
    anonymous = providers.anonymous
    if is_cors_preflight(attrs):
        return anonymous
    tokens = [extract_tokens(attrs, provider.locations) for provider in providers.providers]
    if not any(tokens):
        return anonymous
    tokens_key = tuple(tuple((f.location, f.token) for f in row) for row in tokens)
    if cache is not None:
        remembered = cache.outcomes.get(providers, tokens_key, now, remote_keys)
        if remembered is not None:
            return remembered
    parsed_here: dict[str, Jwt | JwtStatus] = {}
    checked = [
        [
            check_token(found, provider, remote_keys, now, cache, parsed_here)
            for found in found_tokens
        ]
        for provider, found_tokens in zip(providers.providers, tokens, strict=True)
    ]

    def provider_passes(i: int) -> bool:
        return bool(checked[i]) and all(c.status is JwtStatus.Ok for c in checked[i])

    def allow_missing_status(i: int) -> JwtStatus:
        return checked[i][0].status if checked[i] else JwtStatus.Ok

    n = len(checked)
    if not (n > 1 and any(provider_passes(i) for i in range(n))):
        for i in range(n):
            status = allow_missing_status(i)
            if not provider_passes(i) and status is not JwtStatus.Ok:
                return _rejected(checked[i][0], [c for row in checked for c in row])
    every = [c for row in checked for c in row]
    validity = None
    if cache is not None and not any(c.status in _MAY_CHANGE for c in every):
        validity = Validity(*_window(every), cache.outcomes.remote_keys(providers, remote_keys))
    result = _accepted([c for c in every if c.status is JwtStatus.Ok], providers, validity)
    if cache is not None and validity is not None:
        cache.outcomes.put(providers, tokens_key, result)
    return result


# Failures that a later moment (or fetched keys) could turn into another outcome.
_MAY_CHANGE = frozenset({JwtStatus.JwtExpired, JwtStatus.JwtNotYetValid, JwtStatus.JwksFetchFail})


def _window(every: list[Checked]) -> tuple[float, float]:
    """While every accepted token stays inside its nbf/exp (with the skew)."""
    start, end = float("-inf"), float("inf")
    for c in every:
        if c.status is JwtStatus.Ok and c.jwt is not None:
            start = max(start, c.jwt.nbf - CLOCK_SKEW_SECONDS)
            if c.jwt.exp:
                end = min(end, c.jwt.exp + CLOCK_SKEW_SECONDS)
    return start, end


# Failures that fresh keys could cure: a rotated key (unknown kid) or keys never fetched.
KEY_FAILURES = frozenset({JwtStatus.JwksKidAlgMismatch, JwtStatus.JwksFetchFail})


def _rejected(reported: Checked, every: list[Checked]) -> AuthnResult:
    """The status Envoy would report, plus the key set whose refresh could change the
    outcome. With several rules the reported status can be another rule's (Envoy's AND of
    allow_missing reports the first rule's view, e.g. `JwtUnknownIssuer`), while the token's
    own rule failed on an unknown kid: the edge must refetch that rule's keys."""
    jwt = reported.jwt
    key_failure = next((c for c in every if c.status in KEY_FAILURES and c.provider.jwks_uri), None)
    return AuthnResult(
        reported.status,
        issuer=jwt.iss if jwt else "",
        subject=jwt.sub if jwt else "",
        kid=jwt.kid if jwt else "",
        jwks_uri=key_failure.provider.jwks_uri if key_failure else "",
    )


def _claim_header_value(value: Any) -> str:
    # Envoy's claim_to_headers writes strings, numbers and booleans; other types are skipped.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and value >= 0 else f"{value:f}"
    if isinstance(value, str):
        return value
    return ""


def nested_claim(payload: Any, claim: str) -> Any:
    value = payload
    for step in claim.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def _accepted(
    accepted: list[Checked], providers: ProviderSet, validity: Validity | None
) -> AuthnResult:
    if not accepted:
        return replace(providers.anonymous, validity=validity)
    remove_headers = list(providers.output_headers)
    remove_params: list[str] = []
    set_headers: list[tuple[str, str]] = []
    payloads: dict[str, Any] = {}
    for item in accepted:
        jwt, provider, location = item.jwt, item.provider, item.found.location
        assert jwt is not None
        if not provider.forward_original_token:
            # Envoy drops the whole header a verified token came from. It leaves a query
            # parameter in place; we remove that too, so the token never reaches the upstream.
            if location.kind == "header":
                remove_headers.append(location.name)
            elif location.kind == "param":
                remove_params.append(location.name)
        if provider.output_payload_to_header:
            set_headers.append((provider.output_payload_to_header, jwt.token.split(".")[1]))
        for mapping in provider.output_claim_to_headers:
            value = _claim_header_value(nested_claim(jwt.payload, mapping.claim))
            if value:
                set_headers.append((mapping.header, value))
        # Istio asks jwt_authn for payload_in_metadata keyed by the rule's issuer.
        payloads[provider.issuer or jwt.iss] = jwt.payload
    first = accepted[0].jwt
    assert first is not None
    # A header we set replaces the client's copy; one we could not fill is removed.
    set_names = {name for name, _ in set_headers}
    remove_headers = [name for name in remove_headers if name not in set_names]
    return AuthnResult(
        JwtStatus.Ok,
        principal=f"{first.iss}/{first.sub}",
        claims=first.payload,
        issuer=first.iss,
        subject=first.sub,
        kid=first.kid,
        headers_to_remove=tuple(dict.fromkeys(remove_headers)),
        params_to_remove=tuple(dict.fromkeys(remove_params)),
        headers_to_set=tuple(dict.fromkeys(set_headers)),
        payloads=payloads,
        validity=validity,
    )

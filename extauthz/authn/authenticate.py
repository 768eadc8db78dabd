"""Authenticate one request as Istio's Envoy does, and name its request principal.

Envoy's split, one module per job: the extractor finds each provider's tokens (extract.py),
the authenticator checks each of them for that provider in Envoy's order (authenticator.py),
and the requirement tree istiod compiles from the JWTRules says what the outcomes add up to
(verifier.py, built once per ProviderSet). A request without tokens passes with no identity,
and a present token must be valid; with several tokens or rules, the tree decides.

This module puts the three together and builds the AuthnResult: the identity, the headers
and parameters the upstream request loses or gains, and how long the outcome holds (whole
outcomes are remembered for repeated tokens, see outcomes.py). CORS preflight requests
bypass JWT checks (Istio sets bypass_cors_preflight).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticator import CLOCK_SKEW_SECONDS, Authenticator, Checked
from extauthz.authn.cache import MalformedKey, TokenCache
from extauthz.authn.claims import normalized_payload
from extauthz.authn.extract import FoundToken, extract_tokens
from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import KeySet
from extauthz.authn.providers import JwtProvider, ProviderSet
from extauthz.authn.result import ANONYMOUS, AuthnResult, KeyLookup, Validity
from extauthz.authn.status import JwtStatus
from extauthz.authn.verifier import OK as OK_VERDICT
from extauthz.authn.verifier import Verdict, Walk
from extauthz.authn.verify import verify_signature


def _verify_refusing_crit(jwt: Jwt, keys: KeySet) -> JwtStatus:
    return verify_signature(jwt, keys, refuse_crit=True)


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
    cache: TokenCache | None = None,
) -> AuthnResult:
    if not providers.providers:
        return ANONYMOUS  # no RequestAuthentication: tokens are not looked at
    anonymous = providers.anonymous
    if is_cors_preflight(attrs):
        return anonymous
    # Rules without their own locations share the default ones: each set is read once.
    found_at: dict[int, list[FoundToken]] = {}
    tokens = []
    for provider in providers.providers:
        found = found_at.get(id(provider.locations))
        if found is None:
            found = found_at[id(provider.locations)] = extract_tokens(attrs, provider.locations)
        tokens.append(found)
    if not any(tokens):
        return anonymous
    tokens_key = tuple(tuple((f.location, f.token) for f in row) for row in tokens)
    if cache is not None:
        remembered = cache.outcomes.get(providers, tokens_key, now, remote_keys)
        if remembered is not None:
            return remembered
    # The parser and the signature check are this module's names, read per call, so that
    # what patches them here (tests counting parses and verifications) sees every call.
    verify = _verify_refusing_crit if providers.refuse_crit else verify_signature
    authenticator = Authenticator(remote_keys, now, cache, parse_jwt, verify)
    malformed = _malformed_key(tokens, authenticator) if cache is not None else None
    if malformed is not None:
        assert cache is not None
        known = cache.malformed.get((id(providers), malformed))
        if known is not None and known[0] is providers:
            return known[1]
    if providers.single_provider and len(tokens[0]) == 1:
        verdict, every, events = _walk_one(tokens[0][0], providers.providers[0], authenticator)
    else:
        verdict, every, events = _walk(tokens, providers, authenticator)
    if not verdict.is_ok:
        rejected = _rejected(verdict, every)
        if malformed is not None:
            assert cache is not None
            count = sum(len(row) for row in malformed)
            cache.malformed.put((id(providers), malformed), (providers, rejected), count)
        return rejected
    validity = None
    if cache is not None and not any(c.status in _MAY_CHANGE for c in every):
        validity = Validity(
            *_window(every), cache.outcomes.remote_keys(providers, remote_keys, now)
        )
    result = _accepted(events, providers, validity)
    if cache is not None and validity is not None:
        cache.outcomes.put(providers, tokens_key, result)
    return result


Walked = tuple[Verdict[Checked], list[Checked], list[tuple[int, Checked | None]]]


def _walk(
    tokens: list[list[FoundToken]], providers: ProviderSet, authenticator: Authenticator
) -> Walked:
    """The tree walks the providers as Envoy does: its verdict, each check it made and what
    it did to the request (verifier.Walk), in order."""
    plist = providers.providers
    walk: Walk[FoundToken, Checked] = Walk(
        tokens,
        lambda index, found: authenticator.check(found, plist[index]),
        takes=lambda index, checked: _taken(checked),
        place=_place,
    )
    verdict = providers.verifier.verify(walk)
    return verdict, walk.checked, walk.events


def _walk_one(found: FoundToken, provider: JwtProvider, authenticator: Authenticator) -> Walked:
    """What `_walk` gives for one JWTRule and one token found, without walking: istiod's
    tree is then OR{P1, allow_missing}, whose node starts (an event), checks the token and
    passes with it, or fails with its status (any_status: the only child's, a JwtMissed
    allowed). tests/unit/test_authenticate_walk.py holds both to the same results."""
    checked = authenticator.check(found, provider)
    if checked.status is JwtStatus.Ok:
        return OK_VERDICT, [checked], [(0, None), (0, checked)]
    if checked.status is JwtStatus.JwtMissed:
        return OK_VERDICT, [checked], [(0, None)]
    return Verdict(checked.status, checked), [checked], [(0, None)]


def _malformed_key(
    tokens: list[list[FoundToken]], authenticator: Authenticator
) -> MalformedKey | None:
    """Where each token was found and why it does not parse, when none of them parses.

    Such a token fails every rule's check with that status (parsing comes first and does
    not depend on the rule), nothing is taken out of the request, and the rejection names no
    issuer, subject or key. So the walk's outcome is a function of these pairs: a client
    sending new junk on every request is answered from the first such rejection."""
    rows = []
    for row in tokens:
        pairs = []
        for found in row:
            status = authenticator.parse_failure(found.token)
            if status is None:
                return None
            pairs.append((found.location, status))
        rows.append(tuple(pairs))
    return tuple(rows)


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


def _rejected(verdict: Verdict[Checked], every: list[Checked]) -> AuthnResult:
    """The status the requirement tree reports, plus the key set whose refresh could change
    the outcome. With several rules the reported status can be another rule's (the AND of
    allow_missing reports the first rule's view, e.g. `JwtUnknownIssuer`), while the token's
    own rule failed on an unknown kid: the edge must refetch that rule's keys."""
    jwt = verdict.token.jwt if verdict.token is not None else None
    key_failure = next((c for c in every if c.status in KEY_FAILURES and c.provider.jwks_uri), None)
    return AuthnResult(
        verdict.status,
        issuer=jwt.iss if jwt else "",
        subject=jwt.sub if jwt else "",
        kid=jwt.kid if jwt else "",
        jwks_uri=key_failure.provider.jwks_uri if key_failure else "",
    )


def _claim_header_value(value: Any) -> str:
    """What jwt_authn's claim_to_headers writes for a claim (measured against Envoy 1.40):
    a string as it is, a boolean as true/false, a number as the double it becomes in
    protobuf (a whole number from 0 below 2**64 without decimals, any other with six), a
    list or an object as base64 of its compact JSON; nothing for null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if number.is_integer() and 0 <= number < 2.0**64:
            return str(int(number))
        return f"{number:f}"
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return base64.b64encode(text.encode()).decode()
    return ""


def nested_claim(payload: Any, claim: str) -> Any:
    value = payload
    for step in claim.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def _place(found: FoundToken) -> tuple[str, str]:
    return found.location.kind, found.location.name


def _taken(checked: Checked) -> tuple[str, str] | None:
    """Where a token that passed leaves the request: its whole header, or its query
    parameter (measured: jwt_authn removes both); a forwarded token and a cookie stay."""
    if checked.provider.forward_original_token or checked.found.location.kind == "cookie":
        return None
    return _place(checked.found)


def _outputs(provider: JwtProvider) -> tuple[str, ...]:
    names = (
        provider.output_payload_to_header,
        *(c.header for c in provider.output_claim_to_headers),
    )
    return tuple(name for name in names if name)


def _accepted(
    events: list[tuple[int, Checked | None]], providers: ProviderSet, validity: Validity | None
) -> AuthnResult:
    """The walk's effects on the request, replayed in order: a provider's node clears the
    headers it writes, and every token it accepts leaves the request (unless forwarded) and
    adds its payload and claim headers."""
    accepted = [outcome for _, outcome in events if outcome is not None]
    if not accepted:
        return replace(providers.anonymous, validity=validity)
    # Measured: the client's copies of every provider's output headers are gone, also those
    # of providers the walk never visits; a node that starts clears them again, dropping
    # what an earlier visit of the same provider wrote.
    cleared: list[str] = list(providers.output_headers)
    remove_headers: list[str] = []
    remove_params: list[str] = []
    set_headers: list[tuple[str, str]] = []
    payloads: dict[str, Any] = {}
    for index, item in events:
        provider = providers.providers[index]
        if item is None:
            names = _outputs(provider)
            set_headers = [(name, value) for name, value in set_headers if name not in names]
            cleared.extend(names)
            continue
        jwt, location = item.jwt, item.found.location
        assert jwt is not None
        if _taken(item) is not None:
            (remove_headers if location.kind == "header" else remove_params).append(location.name)
        if provider.output_payload_to_header:
            set_headers.append((provider.output_payload_to_header, jwt.token.split(".")[1]))
        for mapping in provider.output_claim_to_headers:
            value = _claim_header_value(nested_claim(jwt.payload, mapping.claim))
            if value:
                set_headers.append((mapping.header, value))
        # Istio asks jwt_authn for payload_in_metadata keyed by the rule's issuer, each
        # payload normalized by the provider that verified it.
        payloads[provider.issuer or jwt.iss] = normalized_payload(
            jwt.payload, provider.space_delimited_claims
        )
    # Every provider writes its payload under one metadata key (istiod's `payload`): the
    # identity RBAC sees is that of the last token verified.
    last = accepted[-1]
    identity = last.jwt
    assert identity is not None
    claims = normalized_payload(identity.payload, last.provider.space_delimited_claims)
    # A header we set replaces the client's copy; one cleared and not written is removed.
    set_names = {name for name, _ in set_headers}
    remove_headers = [name for name in (*remove_headers, *cleared) if name not in set_names]
    return AuthnResult(
        JwtStatus.Ok,
        principal=f"{identity.iss}/{identity.sub}",
        claims=claims,
        issuer=identity.iss,
        subject=identity.sub,
        kid=identity.kid,
        headers_to_remove=tuple(dict.fromkeys(remove_headers)),
        params_to_remove=tuple(dict.fromkeys(remove_params)),
        # One entry per token verified, in the order verified (Envoy adds a copy each time).
        headers_to_set=tuple(set_headers),
        payloads=payloads,
        validity=validity,
    )

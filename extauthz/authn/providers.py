"""JWT providers: each JWTRule of the RequestAuthentications that apply, compiled once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from extauthz.authn.extract import Location, rule_locations
from extauthz.authn.keys import KeySet, parse_jwks
from extauthz.config.resources import ClaimToHeader, RequestAuthentication

# Istio's JWTRule.timeout default for fetching a jwksUri.
DEFAULT_JWKS_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class JwtProvider:
    ref: str  # "namespace/name jwtRules[i]", for explanations
    issuer: str
    audiences: frozenset[str]
    locations: tuple[Location, ...]
    inline_keys: KeySet | None
    jwks_uri: str
    jwks_timeout_seconds: float
    forward_original_token: bool
    output_payload_to_header: str
    output_claim_to_headers: tuple[ClaimToHeader, ...]

    def allows_issuer(self, issuer: str) -> bool:
        # A rule with only a jwksUri (no issuer) accepts tokens of any issuer, as Envoy does
        # for a provider without `issuer`.
        return not self.issuer or issuer == self.issuer

    def allows_audiences(self, audiences: tuple[str, ...]) -> bool:
        # No configured audiences accepts any token; otherwise one of the token's must be listed.
        return not self.audiences or any(aud in self.audiences for aud in audiences)


@dataclass(frozen=True, slots=True)
class ProviderSet:
    providers: tuple[JwtProvider, ...] = ()
    locations: tuple[Location, ...] = ()  # the union, in first-seen order
    # Headers the providers write upstream; a client's own copies are always removed, so a
    # client can never pose as a verified claim.
    output_headers: tuple[str, ...] = ()

    @property
    def jwks_uris(self) -> dict[str, float]:
        """Every remote JWKS to keep fresh, with the shortest fetch timeout naming it."""
        uris: dict[str, float] = {}
        for provider in self.providers:
            if provider.jwks_uri and provider.inline_keys is None:
                timeout = provider.jwks_timeout_seconds
                uris[provider.jwks_uri] = min(timeout, uris.get(provider.jwks_uri, timeout))
        return uris


def compile_providers(authns: Iterable[RequestAuthentication]) -> ProviderSet:
    providers: list[JwtProvider] = []
    for authn in authns:
        for index, rule in enumerate(authn.jwt_rules):
            providers.append(
                JwtProvider(
                    ref=f"{authn.meta.ref} jwtRules[{index}]",
                    issuer=rule.issuer,
                    audiences=frozenset(rule.audiences),
                    locations=rule_locations(rule),
                    # Inline `jwks` wins over `jwksUri`, as in Istio.
                    inline_keys=parse_jwks(rule.jwks) if rule.jwks else None,
                    jwks_uri=rule.jwks_uri,
                    jwks_timeout_seconds=rule.timeout_seconds or DEFAULT_JWKS_TIMEOUT_SECONDS,
                    forward_original_token=rule.forward_original_token,
                    output_payload_to_header=rule.output_payload_to_header,
                    output_claim_to_headers=rule.output_claim_to_headers,
                )
            )
    locations = tuple(dict.fromkeys(loc for p in providers for loc in p.locations))
    outputs = tuple(
        dict.fromkeys(
            name
            for p in providers
            for name in (p.output_payload_to_header, *(c.header for c in p.output_claim_to_headers))
            if name
        )
    )
    return ProviderSet(tuple(providers), locations, outputs)

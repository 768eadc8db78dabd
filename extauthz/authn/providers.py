"""JWT providers: each JWTRule of the RequestAuthentications that apply, compiled once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from extauthz.authn.claims import DEFAULT_SPACE_DELIMITED_CLAIMS, space_delimited_claims
from extauthz.authn.extract import Location, rule_locations
from extauthz.authn.keys import JwksError, KeySet
from extauthz.authn.result import ALWAYS, ANONYMOUS, AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.authn.verifier import AnyNode, ProviderNode, Verifier, istio_requirement
from extauthz.config.resources import ClaimToHeader, RequestAuthentication

# Istio's JWTRule.timeout default for fetching a jwksUri.
DEFAULT_JWKS_TIMEOUT_SECONDS = 5.0
OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class JwksSource:
    """Where a rule's keys come from over the network."""

    uri: str  # the jwksUri, or the issuer's OIDC discovery document
    timeout_seconds: float
    is_discovery: bool = False


@dataclass(frozen=True, slots=True)
class JwtProvider:
    ref: str  # "namespace/name jwtRules[i]", for explanations
    issuer: str
    audiences: frozenset[str]
    locations: tuple[Location, ...]
    inline_keys: KeySet | None
    jwks_uri: str  # the key of its KeySet in the KeyStore; "" with inline keys
    jwks_timeout_seconds: float
    jwks_discovery: bool
    forward_original_token: bool
    output_payload_to_header: str
    output_claim_to_headers: tuple[ClaimToHeader, ...]
    # The claims this provider splits on spaces in the payloads it accepts (claims.py).
    space_delimited_claims: tuple[str, ...] = DEFAULT_SPACE_DELIMITED_CLAIMS

    def allows_issuer(self, issuer: str) -> bool:
        # A rule with only a jwksUri (no issuer) accepts tokens of any issuer, as Envoy does
        # for a provider without `issuer`.
        return not self.issuer or issuer == self.issuer

    def allows_audiences(self, audiences: tuple[str, ...]) -> bool:
        # No configured audiences accepts any token; otherwise one of the token's must be listed.
        return not self.audiences or any(aud in self.audiences for aud in audiences)


# The tree authenticate._walk_one follows without walking it (exactly this shape: should
# istio_requirement ever build another for one rule, the tree is walked).
_ONE_PROVIDER = AnyNode((ProviderNode(0),), allow_missing=True)


@dataclass(frozen=True, slots=True)
class ProviderSet:
    providers: tuple[JwtProvider, ...] = ()
    locations: tuple[Location, ...] = ()  # the union, in first-seen order
    # Headers the providers write upstream; a client's own copies are always removed, so a
    # client can never pose as a verified claim.
    output_headers: tuple[str, ...] = ()
    # The outcome for a request without tokens: no identity, the client's copies removed.
    anonymous: AuthnResult = ANONYMOUS
    # Refuse tokens with a `crit` header (opt-in: Envoy ignores `crit`).
    refuse_crit: bool = False
    # Istio's requirement over these providers, built here once, never per request.
    verifier: Verifier = field(init=False, repr=False, compare=False)
    # One JWTRule: its tree is OR{P1, allow_missing}, which authenticate() can follow for a
    # single token without walking it.
    single_provider: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        verifier = istio_requirement(len(self.providers))
        object.__setattr__(self, "verifier", verifier)
        object.__setattr__(self, "single_provider", verifier == _ONE_PROVIDER)

    @property
    def jwks_sources(self) -> dict[str, JwksSource]:
        """Every remote key set to keep fresh (one per URI, the shortest timeout naming it)."""
        sources: dict[str, JwksSource] = {}
        for p in self.providers:
            if not p.jwks_uri:
                continue
            known = sources.get(p.jwks_uri)
            timeout = min(p.jwks_timeout_seconds, known.timeout_seconds if known else 1e9)
            sources[p.jwks_uri] = JwksSource(p.jwks_uri, timeout, p.jwks_discovery)
        return sources


def compile_rules(authn: RequestAuthentication) -> tuple[JwtProvider, ...]:
    """One provider per JWTRule of a RequestAuthentication, compiled once per generation."""
    providers = []
    for index, rule in enumerate(authn.jwt_rules):
        # Inline `jwks` wins over `jwksUri`, as in Istio; with neither, Istio finds the
        # keys through the issuer's OpenID Connect discovery document. Inline keys were
        # parsed when the resource was read (within the configuration's limits).
        inline = rule.keys if rule.jwks else None
        if rule.jwks and inline is None:
            raise JwksError(f"{authn.meta.ref} jwtRules[{index}]: inline jwks was not parsed")
        discovery = inline is None and not rule.jwks_uri
        uri = "" if inline else rule.jwks_uri or rule.issuer.rstrip("/") + OIDC_DISCOVERY_PATH
        providers.append(
            JwtProvider(
                ref=f"{authn.meta.ref} jwtRules[{index}]",
                issuer=rule.issuer,
                audiences=frozenset(rule.audiences),
                locations=rule_locations(rule),
                inline_keys=inline,
                jwks_uri=uri,
                jwks_timeout_seconds=rule.timeout_seconds or DEFAULT_JWKS_TIMEOUT_SECONDS,
                jwks_discovery=discovery,
                forward_original_token=rule.forward_original_token,
                output_payload_to_header=rule.output_payload_to_header,
                output_claim_to_headers=rule.output_claim_to_headers,
                space_delimited_claims=space_delimited_claims(rule.space_delimited_claims),
            )
        )
    return tuple(providers)


def provider_set(providers: Iterable[JwtProvider], refuse_crit: bool = False) -> ProviderSet:
    """The providers of one workload, with their locations and output headers gathered.
    istiod stable-sorts the JWTRules of all RequestAuthentications by issuer before it names
    them origins-0..n-1, and the order decides which status a rejection reports."""
    chosen = tuple(sorted(providers, key=lambda provider: provider.issuer))
    locations = tuple(dict.fromkeys(loc for p in chosen for loc in p.locations))
    outputs = tuple(
        dict.fromkeys(
            name
            for p in chosen
            for name in (p.output_payload_to_header, *(c.header for c in p.output_claim_to_headers))
            if name
        )
    )
    anonymous = AuthnResult(JwtStatus.Ok, headers_to_remove=outputs, validity=ALWAYS)
    return ProviderSet(chosen, locations, outputs, anonymous, refuse_crit)

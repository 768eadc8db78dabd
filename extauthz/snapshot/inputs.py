"""Which request values a workload's decision can depend on, worked out once per Snapshot.

A decision is a pure function of the request values its JWT rules and policies read (and of
the keys and the clock, which the remembered outcomes of authn/outcomes.py account for).
Two requests that agree on every value listed here get the same decision, so the edge can
remember an answer by those values alone (decision_memo.py) instead of converting and
deciding again. Over-listing only costs hits; under-listing would be a wrong answer, so
anything not understood here makes the workload's decisions unremembered.

Nothing here names a policy field: each rule declares what it reads (authz/fields.py), each
provider where its tokens are; this module only says where each of those values arrives in
a CheckRequest (as envoy_api.to_attributes reads it). Method, host, and the path with its
query (where `access_token` lives) are always read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from extauthz.authn.extract import Location
from extauthz.authn.providers import ProviderSet
from extauthz.authz.evaluate import CompiledPolicy
from extauthz.authz.reads import Reads, RequestValue
from extauthz.authz.rules import rule_reads
from extauthz.config.parse import ConfigError
from extauthz.config.resources import AuthorizationPolicy


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    rememberable: bool = True  # False: something was not understood, decide every request
    headers: tuple[str, ...] = ()  # lower-case names of the headers read
    source_ip: bool = False  # Envoy's direct downstream peer
    destination: bool = False  # destination ip and port
    source_principal: bool = False  # the peer certificate's URI SAN
    sni: bool = False


NOT_REMEMBERED = DecisionInputs(rememberable=False)
_ALWAYS_READ = DecisionInputs()
_XFF = "x-forwarded-for"

# Where each value a rule can read arrives in a CheckRequest. A value without an entry
# (scheme, source port, request id, context extensions) is not in the key: a workload whose
# rules read one is decided every time.
_RAW: Mapping[RequestValue, DecisionInputs] = {
    RequestValue.METHOD: _ALWAYS_READ,
    RequestValue.HOST: _ALWAYS_READ,
    RequestValue.PATH: _ALWAYS_READ,
    RequestValue.QUERY: _ALWAYS_READ,  # http.path keeps the query
    RequestValue.AUTHN: _ALWAYS_READ,  # the token, at the providers' locations
    RequestValue.SOURCE_IP: DecisionInputs(source_ip=True),
    # Envoy's client address: x-forwarded-for, or the direct peer without one.
    RequestValue.REMOTE_IP: DecisionInputs(source_ip=True, headers=(_XFF,)),
    RequestValue.DESTINATION_IP: DecisionInputs(destination=True),
    RequestValue.DESTINATION_PORT: DecisionInputs(destination=True),
    # Also the peer's namespace, read out of its principal.
    RequestValue.SOURCE_PRINCIPAL: DecisionInputs(source_principal=True),
    RequestValue.SNI: DecisionInputs(sni=True),
}


def decision_inputs(
    providers: ProviderSet, policies: Iterable[CompiledPolicy | AuthorizationPolicy]
) -> DecisionInputs:
    """The inputs of the decisions made with these providers and policies. Compiled policies
    say what they read; a policy as read from YAML is looked up field by field with the same
    declarations (a `when` key none is declared for makes the decisions unremembered)."""
    token = [_token_inputs(location) for location in providers.locations]
    try:
        reads = Reads.union(_reads_of(policy) for policy in policies)
    except ConfigError:
        return NOT_REMEMBERED
    # In RequestValue's order, so a workload's key has the same layout in every process.
    raw = [_RAW.get(value) for value in RequestValue if value in reads.values]
    parts = [*token, DecisionInputs(headers=reads.headers), *raw]
    return _union(parts)


def _token_inputs(location: Location) -> DecisionInputs | None:
    if location.kind == "header":
        return DecisionInputs(headers=(location.name,))
    if location.kind == "cookie":
        return DecisionInputs(headers=("cookie",))
    if location.kind == "param":
        return _ALWAYS_READ  # in the query
    return None


def _reads_of(policy: CompiledPolicy | AuthorizationPolicy) -> Reads:
    if isinstance(policy, CompiledPolicy):
        return policy.reads
    return Reads.union(rule_reads(rule) for rule in policy.rules)


def _union(parts: list[DecisionInputs | None]) -> DecisionInputs:
    known = [part for part in parts if part is not None and part.rememberable]
    if len(known) < len(parts):
        return NOT_REMEMBERED
    return DecisionInputs(
        headers=tuple(dict.fromkeys(name for part in known for name in part.headers)),
        source_ip=any(part.source_ip for part in known),
        destination=any(part.destination for part in known),
        source_principal=any(part.source_principal for part in known),
        sni=any(part.sni for part in known),
    )

"""Which request values a workload's decision can depend on, worked out once per Snapshot.

A decision is a pure function of the request values its JWT rules and policies read (and of
the keys and the clock, which the remembered outcomes of authn/outcomes.py account for).
Two requests that agree on every value listed here get the same decision, so the edge can
remember an answer by those values alone (decision_memo.py) instead of converting and
deciding again. Over-listing only costs hits; under-listing would be a wrong answer, so
anything not understood here makes the workload's decisions unremembered.

Method, host, and the path with its query (where `access_token` lives) are always read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from extauthz.authn.providers import ProviderSet
from extauthz.config.resources import AuthorizationPolicy, Condition

_HEADER_KEY = re.compile(r"^request\.headers\[([^\[\]]+)\]$")
_XFF = "x-forwarded-for"  # remote.ip is read from it (with the direct peer)

# `when` keys answered by the token (covered by the token's location) or by method, host
# and path, which are always read.
_FROM_TOKEN = ("request.auth.",)
_PEER_KEYS = {"source.ip": "source", "remote.ip": "remote", "source.namespace": "principal",
              "source.principal": "principal", "destination.ip": "destination",
              "destination.port": "destination", "connection.sni": "sni"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    rememberable: bool = True  # False: something was not understood, decide every request
    headers: tuple[str, ...] = ()  # lower-case names of the headers read
    source_ip: bool = False  # Envoy's direct downstream peer
    destination: bool = False  # destination ip and port
    source_principal: bool = False  # the peer certificate's URI SAN
    sni: bool = False


NOT_REMEMBERED = DecisionInputs(rememberable=False)


def decision_inputs(
    providers: ProviderSet, policies: Iterable[AuthorizationPolicy]
) -> DecisionInputs:
    headers: dict[str, None] = {}
    reads: set[str] = set()
    for location in providers.locations:
        if location.kind == "header":
            headers[location.name] = None
        elif location.kind == "cookie":
            headers["cookie"] = None
        # "param": in the query, which is always read
    for policy in policies:
        for rule in policy.rules:
            for source in rule.sources:
                if source.principals or source.not_principals:
                    reads.add("principal")
                if source.namespaces or source.not_namespaces:
                    reads.add("principal")
                if source.ip_blocks or source.not_ip_blocks:
                    reads.add("source")
                if source.remote_ip_blocks or source.not_remote_ip_blocks:
                    reads.add("remote")
            for operation in rule.operations:
                if operation.ports or operation.not_ports:
                    reads.add("destination")
            for condition in rule.conditions:
                read = _condition_reads(condition)
                if read is None:
                    return NOT_REMEMBERED
                if read.startswith("header:"):
                    headers[read.removeprefix("header:")] = None
                elif read:
                    reads.add(read)
    if "remote" in reads:
        headers[_XFF] = None
    return DecisionInputs(
        headers=tuple(headers),
        source_ip=bool(reads & {"source", "remote"}),
        destination="destination" in reads,
        source_principal="principal" in reads,
        sni="sni" in reads,
    )


def _condition_reads(condition: Condition) -> str | None:
    """What one `when` condition reads: "" for the token, "header:<name>", a peer value,
    or None for a key not understood here."""
    key = condition.key
    if key.startswith(_FROM_TOKEN):
        return ""
    if key in _PEER_KEYS:
        return _PEER_KEYS[key]
    header = _HEADER_KEY.match(key)
    if header:
        return "header:" + header.group(1).lower()
    return None

"""Envoy's requirement tree: which providers must accept a request's tokens, and which status
a rejected request reports (jwt_authn's verifier.cc, as the Envoy we ship runs it).

istiod compiles the JWTRules that apply to a workload, sorted by issuer, into providers
P1..Pn and one requirement (convertToEnvoyJwtConfig in pilot/pkg/security/authn/
policy_applier.go):

    n = 1:  OR{P1, allow_missing}
    n > 1:  OR{P1, ..., Pn, AND{OR{P1, allow_missing}, ..., OR{Pn, allow_missing}}}

`istio_requirement` builds that tree once per ProviderSet. A request walks it the way Envoy
does, and only as far as Envoy does: a provider checks its tokens from the last found to the
first and stops at the first failure; requires_any stops at the first child that passes;
requires_all at the first that fails. A token that passes leaves the request at once, so a
provider visited later does not find it (measured: with two rules and a token of each, the
AND's second rule finds nothing and passes as missing). Every check made is recorded in the
`Walk`, and so is what Envoy does to the request along the way (clearing a provider's output
headers when its node starts, writing claim headers for each token it accepts). The
aggregation of each node kind is one small function: `provider_status`, `any_status`,
`all_status`.

In requires_any, `allow_missing` is not a child but a flag (AnyVerifierImpl): when no child
passes, the children's statuses are aggregated (a real error wins over JwtUnknownIssuer,
which wins over JwtMissed; among real errors, the last child's), and a JwtMissed result is
then turned into Ok. Measured against Envoy 1.40 by tests/conformance.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Never, Protocol, TypeVar

from extauthz.authn.status import JwtStatus
from extauthz.records import record


class TokenOutcome(Protocol):
    """One token checked against one provider (authenticator.Checked)."""

    @property
    def status(self) -> JwtStatus: ...


T = TypeVar("T", bound=TokenOutcome)
T_co = TypeVar("T_co", bound=TokenOutcome, covariant=True)
F = TypeVar("F")  # a token found at a provider's locations


@record
class Verdict(Generic[T_co]):
    """A node's status, and the checked token it comes from (for the rejection's details)."""

    status: JwtStatus
    token: T_co | None = None

    @property
    def is_ok(self) -> bool:
        return self.status is JwtStatus.Ok


OK: Verdict[Never] = Verdict(JwtStatus.Ok)
MISSED: Verdict[Never] = Verdict(JwtStatus.JwtMissed)
# Statuses that say "not this provider's token" rather than "a bad token".
_NOT_MINE = frozenset({JwtStatus.JwtMissed, JwtStatus.JwtUnknownIssuer})


def _nothing_taken(provider: int, outcome: object) -> Hashable | None:
    return None


def _no_place(token: object) -> Hashable:
    return None


@dataclass(slots=True)
class Walk(Generic[F, T]):
    """One request's way through the tree: the tokens each provider finds, how to check one,
    and what the walk did, in Envoy's order.

    Envoy's filter changes the request as it goes: a token that passes (unless the rule
    forwards it) is taken out of the request at once, so providers visited later no longer
    find it there. `takes` names the place a passing check empties, `place` the place of a
    found token; tokens at a place already emptied are not found again."""

    found: Sequence[Sequence[F]]  # per provider index, in the request as sent
    check: Callable[[int, F], T]  # (provider index, found token) -> checked
    takes: Callable[[int, T], Hashable | None] = _nothing_taken
    place: Callable[[F], Hashable] = _no_place
    checked: list[T] = field(default_factory=list)  # every check made
    # (provider, None) when a provider's node starts (Envoy then clears the headers that
    # provider writes), (provider, outcome) for each token it accepts.
    events: list[tuple[int, T | None]] = field(default_factory=list)
    emptied: set[Hashable] = field(default_factory=set)

    def tokens_of(self, provider: int) -> list[F]:
        self.events.append((provider, None))
        if not self.emptied:
            return list(self.found[provider])
        return [token for token in self.found[provider] if self.place(token) not in self.emptied]

    def check_token(self, provider: int, token: F) -> T:
        outcome = self.check(provider, token)
        self.checked.append(outcome)
        if outcome.status is JwtStatus.Ok:
            self.events.append((provider, outcome))
            taken = self.takes(provider, outcome)
            if taken is not None:
                self.emptied.add(taken)
        return outcome


def provider_status(walk: Walk[F, T], provider: int) -> Verdict[T]:
    """A provider requirement (ProviderVerifierImpl; its AuthenticatorImpl allows neither
    missing nor failed): no token is JwtMissed; tokens are checked from the last to the first
    and the first failure ends it (`doneWithStatus`); every token must pass."""
    tokens = walk.tokens_of(provider)
    if not tokens:
        return MISSED
    for token in reversed(tokens):
        outcome = walk.check_token(provider, token)
        if outcome.status is not JwtStatus.Ok:
            return Verdict(outcome.status, outcome)
    return OK


def any_status(children: Sequence[Verdict[T]], allow_missing: bool) -> Verdict[T]:
    """requires_any once no child passed (AnyVerifierImpl::onComplete): a status other than
    JwtMissed and JwtUnknownIssuer wins (the last such child's), then JwtUnknownIssuer, then
    JwtMissed; with allow_missing, JwtMissed becomes Ok."""
    final: Verdict[T] = MISSED
    for child in children:
        if child.status not in _NOT_MINE or final.status is JwtStatus.JwtMissed:
            final = child
    if allow_missing and final.status is JwtStatus.JwtMissed:
        return OK
    return final


def all_status(child: Verdict[T]) -> bool:
    """requires_all (AllVerifierImpl::onComplete): done at the first child that fails."""
    return not child.is_ok


@dataclass(frozen=True, slots=True)
class ProviderNode:
    provider: int  # index into ProviderSet.providers and into the per-provider tokens

    def verify(self, walk: Walk[F, T]) -> Verdict[T]:
        return provider_status(walk, self.provider)

    def __str__(self) -> str:
        return f"P{self.provider + 1}"


@dataclass(frozen=True, slots=True)
class AnyNode:
    children: tuple[Verifier, ...]
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if not self.children:  # istiod never writes an allow_missing alone
            raise ValueError("requires_any needs at least one requirement")

    def verify(self, walk: Walk[F, T]) -> Verdict[T]:
        done: list[Verdict[T]] = []
        for child in self.children:  # BaseGroupVerifierImpl::verify: stop once one passes
            verdict = child.verify(walk)
            if verdict.is_ok:
                return verdict
            done.append(verdict)
        return any_status(done, self.allow_missing)

    def __str__(self) -> str:
        parts = [*map(str, self.children), *(["allow_missing"] if self.allow_missing else [])]
        return "OR{" + ", ".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class AllNode:
    children: tuple[Verifier, ...]

    def __post_init__(self) -> None:
        if not self.children:  # an empty AND would accept everything: refuse to build it
            raise ValueError("requires_all needs at least one requirement")

    def verify(self, walk: Walk[F, T]) -> Verdict[T]:
        for child in self.children:
            verdict = child.verify(walk)
            if all_status(verdict):
                return verdict
        return OK

    def __str__(self) -> str:
        return "AND{" + ", ".join(map(str, self.children)) + "}"


@dataclass(frozen=True, slots=True)
class AllowAllNode:
    """No requirement (AllowAllVerifierImpl): what a workload without JWTRules gets."""

    def verify(self, walk: Walk[F, T]) -> Verdict[T]:
        return OK

    def __str__(self) -> str:
        return "allow_all"


Verifier = ProviderNode | AnyNode | AllNode | AllowAllNode
ALLOW_ALL = AllowAllNode()


def istio_requirement(provider_count: int) -> Verifier:
    """The tree istiod writes for `provider_count` JWTRules, in the order given."""
    if provider_count == 0:
        return ALLOW_ALL
    each = tuple(AnyNode((ProviderNode(i),), allow_missing=True) for i in range(provider_count))
    if provider_count == 1:
        return each[0]
    # The outer OR lets a request through whose token several providers read from one
    # shared location: the AND alone would always fail it (istiod's own comment).
    return AnyNode((*(ProviderNode(i) for i in range(provider_count)), AllNode(each)))

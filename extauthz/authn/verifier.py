"""Envoy's requirement tree: which providers must accept a request's tokens, and which status
a rejected request reports (jwt_authn's verifier.cc).

istiod compiles the JWTRules that apply to a workload into providers P1..Pn and one
requirement (convertToEnvoyJwtConfig in pilot/pkg/security/authn/policy_applier.go):

    n = 1:  OR{P1, allow_missing(P1)}
    n > 1:  OR{P1, ..., Pn, AND{OR{P1, allow_missing(P1)}, ..., OR{Pn, allow_missing(Pn)}}}

`istio_requirement` builds that tree once per ProviderSet. For a request, the authenticator
(authenticator.py) first checks every token found at every provider's locations; the tree
then only aggregates those outcomes. Each node kind has one small aggregation function,
named after the Envoy code it reproduces: `provider_verdict`, `allow_missing_verdict`,
`any_verdict`, `all_verdict`.

These are the semantics extauthz has always had: the allow_missing of Envoy's original
`AllowMissingVerifierImpl` (a child of its OR, verifying its siblings' tokens) and an OR that
reports the status of its last child. Envoy 1.17 changed both (envoyproxy/envoy#13839,
#15194); reproducing the newer aggregation belongs to these four functions and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Never, Protocol, TypeVar

from extauthz.authn.status import JwtStatus


class TokenOutcome(Protocol):
    """One token checked against one provider (authenticator.Checked)."""

    @property
    def status(self) -> JwtStatus: ...


T = TypeVar("T", bound=TokenOutcome)
T_co = TypeVar("T_co", bound=TokenOutcome, covariant=True)


@dataclass(frozen=True, slots=True)
class Verdict(Generic[T_co]):
    """A node's status, and the checked token it comes from (for the rejection's details)."""

    status: JwtStatus
    token: T_co | None = None

    @property
    def is_ok(self) -> bool:
        return self.status is JwtStatus.Ok


OK: Verdict[Never] = Verdict(JwtStatus.Ok)
MISSED: Verdict[Never] = Verdict(JwtStatus.JwtMissed)


def provider_verdict(tokens: Sequence[T]) -> Verdict[T]:
    """A provider requirement (ProviderVerifierImpl, whose AuthenticatorImpl neither allows
    missing nor failed): no token is JwtMissed (`verify`); tokens are taken from the last to
    the first (`startVerify`) and the first failure ends it (`doneWithStatus`)."""
    if not tokens:
        return MISSED
    for token in reversed(tokens):
        if token.status is not JwtStatus.Ok:
            return Verdict(token.status, token)
    return OK


def allow_missing_verdict(tokens: Sequence[T]) -> Verdict[T]:
    """allow_missing (AllowMissingVerifierImpl, whose AuthenticatorImpl allows missing): no
    token passes; otherwise every token is verified, from the last to the first, failures
    included (`doneWithStatus` goes on), and the status is the last one verified: the first
    token found."""
    if not tokens:
        return OK  # JwtMissed, which allow_missing turns into Ok
    first = tokens[0]
    return Verdict(first.status, first)


def any_verdict(children: Iterable[Verdict[T]]) -> Verdict[T]:
    """requires_any (AnyVerifierImpl::onComplete): done at the first child that passes,
    otherwise when every child is done, with the status of the last one. (Children complete
    in order: every key is at hand before a request is decided.)"""
    last: Verdict[T] = MISSED  # no child at all accepts nothing
    for verdict in children:
        if verdict.is_ok:
            return verdict
        last = verdict
    return last


def all_verdict(children: Iterable[Verdict[T]]) -> Verdict[T]:
    """requires_all (AllVerifierImpl::onComplete): done at the first child that fails,
    otherwise Ok once every child passed."""
    for verdict in children:
        if not verdict.is_ok:
            return verdict
    return OK


@dataclass(frozen=True, slots=True)
class ProviderNode:
    provider: int  # index into ProviderSet.providers and into the per-provider tokens

    def verify(self, tokens: Sequence[Sequence[T]]) -> Verdict[T]:
        return provider_verdict(tokens[self.provider])

    def __str__(self) -> str:
        return f"P{self.provider + 1}"


@dataclass(frozen=True, slots=True)
class AllowMissingNode:
    """Envoy builds an allow_missing's extractor from the providers of its OR siblings
    (`used_providers`); istiod puts it beside exactly one provider, which it names."""

    provider: int

    def verify(self, tokens: Sequence[Sequence[T]]) -> Verdict[T]:
        return allow_missing_verdict(tokens[self.provider])

    def __str__(self) -> str:
        return f"allow_missing(P{self.provider + 1})"


@dataclass(frozen=True, slots=True)
class AnyNode:
    children: tuple[Verifier, ...]

    def __post_init__(self) -> None:
        if not self.children:
            raise ValueError("requires_any needs at least one requirement")

    def verify(self, tokens: Sequence[Sequence[T]]) -> Verdict[T]:
        # A generator, so children after the first that passes are not visited, as in
        # BaseGroupVerifierImpl::verify.
        return any_verdict(child.verify(tokens) for child in self.children)

    def __str__(self) -> str:
        return "OR{" + ", ".join(map(str, self.children)) + "}"


@dataclass(frozen=True, slots=True)
class AllNode:
    children: tuple[Verifier, ...]

    def __post_init__(self) -> None:
        if not self.children:  # an empty AND would accept everything: refuse to build it
            raise ValueError("requires_all needs at least one requirement")

    def verify(self, tokens: Sequence[Sequence[T]]) -> Verdict[T]:
        return all_verdict(child.verify(tokens) for child in self.children)

    def __str__(self) -> str:
        return "AND{" + ", ".join(map(str, self.children)) + "}"


@dataclass(frozen=True, slots=True)
class AllowAllNode:
    """No requirement (AllowAllVerifierImpl): what a workload without JWTRules gets."""

    def verify(self, tokens: Sequence[Sequence[T]]) -> Verdict[T]:
        return OK

    def __str__(self) -> str:
        return "allow_all"


Verifier = ProviderNode | AllowMissingNode | AnyNode | AllNode | AllowAllNode
ALLOW_ALL = AllowAllNode()


def istio_requirement(provider_count: int) -> Verifier:
    """The tree istiod writes for `provider_count` JWTRules, in the order given."""
    if provider_count == 0:
        return ALLOW_ALL
    each = tuple(AnyNode((ProviderNode(i), AllowMissingNode(i))) for i in range(provider_count))
    if provider_count == 1:
        return each[0]
    # The outer OR lets a request through whose token several providers read from one
    # shared location: the AND alone would always fail it (istiod's own comment).
    return AnyNode((*(ProviderNode(i) for i in range(provider_count)), AllNode(each)))

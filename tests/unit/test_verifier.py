"""The requirement tree: built as istiod builds it, aggregated as verifier.cc aggregates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from extauthz.authn.status import JwtStatus
from extauthz.authn.verifier import (
    ALLOW_ALL,
    MISSED,
    OK,
    AllNode,
    AllowMissingNode,
    AnyNode,
    ProviderNode,
    Verdict,
    Verifier,
    all_verdict,
    allow_missing_verdict,
    any_verdict,
    istio_requirement,
    provider_verdict,
)
from tests.support.config import request_authentication, snapshot_from
from tests.support.tokens import jwks_of, rsa_key

S = JwtStatus


@dataclass(frozen=True)
class Token:
    """A checked token as the tree sees it: a name to tell tokens apart, and its status."""

    name: str
    status: JwtStatus = S.Ok


GOOD, GOOD_2 = Token("good"), Token("good-2")
EXPIRED, FORGED = Token("expired", S.JwtExpired), Token("forged", S.JwtVerificationFail)
OTHER_ISSUER = Token("other-issuer", S.JwtUnknownIssuer)


@pytest.mark.parametrize(
    ("count", "formula"),
    [
        pytest.param(0, "allow_all", id="no-rules"),
        pytest.param(1, "OR{P1, allow_missing(P1)}", id="one-rule"),
        pytest.param(2, "OR{P1, P2, AND{OR{P1, allow_missing(P1)}, OR{P2, allow_missing(P2)}}}", id="two-rules"),
        pytest.param(3, "OR{P1, P2, P3, AND{OR{P1, allow_missing(P1)}, OR{P2, allow_missing(P2)}, OR{P3, allow_missing(P3)}}}", id="three-rules"),
    ],
)  # fmt: skip
def test_istio_requirement_reads_like_istiods(count: int, formula: str) -> None:
    assert str(istio_requirement(count)) == formula


def test_two_rules_tree_structure() -> None:
    each = tuple(AnyNode((ProviderNode(i), AllowMissingNode(i))) for i in (0, 1))
    assert istio_requirement(2) == AnyNode((ProviderNode(0), ProviderNode(1), AllNode(each)))


def _rules(count: int) -> str:
    key = rsa_key()
    return "---".join(
        request_authentication(jwks_of(key), f"https://{n}.example").replace(
            "name: jwt", f"name: jwt{n}"
        )
        for n in range(count)
    )


@pytest.mark.parametrize("count", [pytest.param(n, id=f"{n}-rules") for n in (0, 1, 2, 3)])
def test_provider_set_holds_its_tree(count: int) -> None:
    providers = snapshot_from(_rules(count)).providers
    assert len(providers.providers) == count
    assert providers.verifier == istio_requirement(count)


def test_a_group_without_requirements_is_refused() -> None:
    for group in (AnyNode, AllNode):
        with pytest.raises(ValueError, match="at least one requirement"):
            group(())


def _verdict(status: JwtStatus, token: Token | None = None) -> Verdict[Token]:
    return Verdict(status, token)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        pytest.param((), MISSED, id="no-token-is-missed"),
        pytest.param((GOOD,), _verdict(S.Ok), id="one-good"),
        pytest.param((GOOD, GOOD_2), _verdict(S.Ok), id="every-token-good"),
        pytest.param((EXPIRED,), _verdict(S.JwtExpired, EXPIRED), id="one-bad"),
        pytest.param((GOOD, FORGED), _verdict(S.JwtVerificationFail, FORGED), id="good-then-bad-fails"),
        pytest.param((FORGED, GOOD), _verdict(S.JwtVerificationFail, FORGED), id="bad-then-good-fails"),
        pytest.param((EXPIRED, FORGED), _verdict(S.JwtVerificationFail, FORGED), id="two-bad-last-checked-first"),
    ],
)  # fmt: skip
def test_provider_verdict(tokens: tuple[Token, ...], expected: Verdict[Token]) -> None:
    assert provider_verdict(tokens) == expected


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        pytest.param((), _verdict(S.Ok), id="no-token-passes"),
        pytest.param((GOOD,), _verdict(S.Ok, GOOD), id="one-good"),
        pytest.param((EXPIRED,), _verdict(S.JwtExpired, EXPIRED), id="one-bad"),
        pytest.param((GOOD, FORGED), _verdict(S.Ok, GOOD), id="good-then-bad-passes"),
        pytest.param((FORGED, GOOD), _verdict(S.JwtVerificationFail, FORGED), id="bad-then-good-fails"),
        pytest.param((EXPIRED, FORGED), _verdict(S.JwtExpired, EXPIRED), id="two-bad-first-reported"),
        pytest.param((OTHER_ISSUER,), _verdict(S.JwtUnknownIssuer, OTHER_ISSUER), id="other-issuer-is-not-missing"),
    ],
)  # fmt: skip
def test_allow_missing_verdict(tokens: tuple[Token, ...], expected: Verdict[Token]) -> None:
    assert allow_missing_verdict(tokens) == expected


EXPIRED_V = _verdict(S.JwtExpired, EXPIRED)
FORGED_V = _verdict(S.JwtVerificationFail, FORGED)
UNKNOWN_V = _verdict(S.JwtUnknownIssuer, OTHER_ISSUER)


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        pytest.param([OK], OK, id="one-passes"),
        pytest.param([EXPIRED_V, OK], OK, id="a-later-child-passes"),
        pytest.param([EXPIRED_V, FORGED_V], FORGED_V, id="all-fail-last-reported"),
        pytest.param([FORGED_V, MISSED], MISSED, id="missed-last-is-reported"),
        pytest.param([EXPIRED_V, UNKNOWN_V], UNKNOWN_V, id="unknown-issuer-last-is-reported"),
    ],
)
def test_any_verdict(children: list[Verdict[Token]], expected: Verdict[Token]) -> None:
    assert any_verdict(children) == expected


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        pytest.param([OK, OK], OK, id="all-pass"),
        pytest.param([OK, EXPIRED_V, FORGED_V], EXPIRED_V, id="first-failure-reported"),
        pytest.param([MISSED, OK], MISSED, id="missed-fails"),
    ],
)
def test_all_verdict(children: list[Verdict[Token]], expected: Verdict[Token]) -> None:
    assert all_verdict(children) == expected


def _then_unreachable(first: Verdict[Token]) -> Iterator[Verdict[Token]]:
    yield first
    raise AssertionError("a child after the deciding one was verified")


def test_groups_stop_at_the_deciding_child() -> None:
    # BaseGroupVerifierImpl::verify stops once the group is completed.
    assert any_verdict(_then_unreachable(OK)) == OK
    assert all_verdict(_then_unreachable(FORGED_V)) == FORGED_V


TWO_RULES = istio_requirement(2)


@pytest.mark.parametrize(
    ("tree", "tokens", "expected"),
    [
        pytest.param(istio_requirement(1), [[]], _verdict(S.Ok), id="one-rule-no-token"),
        pytest.param(istio_requirement(1), [[GOOD, FORGED]], _verdict(S.Ok, GOOD), id="one-rule-first-token-good"),
        pytest.param(istio_requirement(1), [[EXPIRED, FORGED]], EXPIRED_V, id="one-rule-first-token-reported"),
        pytest.param(TWO_RULES, [[GOOD], []], _verdict(S.Ok), id="two-rules-own-locations"),
        # A token at a location both rules read: its own rule passes, the other's
        # allow_missing sees a token of another issuer, and the outer OR lets it through.
        pytest.param(TWO_RULES, [[OTHER_ISSUER], [GOOD]], _verdict(S.Ok), id="two-rules-shared-location"),
        pytest.param(TWO_RULES, [[EXPIRED], [OTHER_ISSUER]], EXPIRED_V, id="two-rules-and-reports-first-rule"),
        pytest.param(TWO_RULES, [[OTHER_ISSUER, GOOD], [GOOD, OTHER_ISSUER]], UNKNOWN_V, id="two-rules-each-sees-the-other"),
        pytest.param(ALLOW_ALL, [], _verdict(S.Ok), id="no-rules"),
    ],
)  # fmt: skip
def test_tree_verdicts(tree: Verifier, tokens: list[list[Token]], expected: Verdict[Token]) -> None:
    assert tree.verify(tokens) == expected

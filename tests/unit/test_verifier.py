"""The requirement tree: built as istiod builds it, aggregated as verifier.cc aggregates."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from extauthz.authn.status import JwtStatus
from extauthz.authn.verifier import (
    ALLOW_ALL,
    MISSED,
    OK,
    AllNode,
    AnyNode,
    ProviderNode,
    Verdict,
    Verifier,
    Walk,
    any_status,
    istio_requirement,
    provider_status,
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
        pytest.param(1, "OR{P1, allow_missing}", id="one-rule"),
        pytest.param(2, "OR{P1, P2, AND{OR{P1, allow_missing}, OR{P2, allow_missing}}}", id="two-rules"),
        pytest.param(3, "OR{P1, P2, P3, AND{OR{P1, allow_missing}, OR{P2, allow_missing}, OR{P3, allow_missing}}}", id="three-rules"),
    ],
)  # fmt: skip
def test_istio_requirement_reads_like_istiods(count: int, formula: str) -> None:
    assert str(istio_requirement(count)) == formula


def test_two_rules_tree_structure() -> None:
    each = tuple(AnyNode((ProviderNode(i),), allow_missing=True) for i in (0, 1))
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


def _walk(*found: tuple[Token, ...]) -> Walk[Token, Token]:
    """A walk over tokens whose statuses are given: checking one returns it."""
    return Walk(found, lambda provider, token: token)


@pytest.mark.parametrize(
    ("tokens", "expected", "checked"),
    [
        pytest.param((), MISSED, [], id="no-token-is-missed"),
        pytest.param((GOOD,), _verdict(S.Ok), [GOOD], id="one-good"),
        pytest.param((GOOD, GOOD_2), _verdict(S.Ok), [GOOD_2, GOOD], id="every-token-good-last-first"),
        pytest.param((EXPIRED,), _verdict(S.JwtExpired, EXPIRED), [EXPIRED], id="one-bad"),
        pytest.param((GOOD, FORGED), _verdict(S.JwtVerificationFail, FORGED), [FORGED], id="good-then-bad-fails"),
        pytest.param((FORGED, GOOD), _verdict(S.JwtVerificationFail, FORGED), [GOOD, FORGED], id="bad-then-good-fails"),
        pytest.param((EXPIRED, FORGED), _verdict(S.JwtVerificationFail, FORGED), [FORGED], id="two-bad-last-checked-first"),
    ],
)  # fmt: skip
def test_provider_status(
    tokens: tuple[Token, ...], expected: Verdict[Token], checked: list[Token]
) -> None:
    walk = _walk(tokens)
    assert provider_status(walk, 0) == expected
    assert walk.checked == checked


EXPIRED_V = _verdict(S.JwtExpired, EXPIRED)
FORGED_V = _verdict(S.JwtVerificationFail, FORGED)
UNKNOWN_V = _verdict(S.JwtUnknownIssuer, OTHER_ISSUER)


@pytest.mark.parametrize(
    ("children", "allow_missing", "expected"),
    [
        pytest.param([EXPIRED_V, FORGED_V], False, FORGED_V, id="real-errors-last-reported"),
        pytest.param([FORGED_V, MISSED], False, FORGED_V, id="an-error-beats-missed"),
        pytest.param([MISSED, FORGED_V], False, FORGED_V, id="missed-then-error"),
        pytest.param([EXPIRED_V, UNKNOWN_V], False, EXPIRED_V, id="an-error-beats-unknown-issuer"),
        pytest.param([UNKNOWN_V, MISSED], False, UNKNOWN_V, id="unknown-issuer-beats-missed"),
        pytest.param([MISSED, MISSED], False, MISSED, id="all-missed"),
        pytest.param([MISSED], True, OK, id="allow-missing-turns-missed-ok"),
        pytest.param([UNKNOWN_V], True, UNKNOWN_V, id="allow-missing-keeps-unknown-issuer"),
        pytest.param([EXPIRED_V], True, EXPIRED_V, id="allow-missing-keeps-errors"),
    ],
)  # fmt: skip
def test_any_status(
    children: list[Verdict[Token]], allow_missing: bool, expected: Verdict[Token]
) -> None:
    assert any_status(children, allow_missing) == expected


def test_groups_stop_at_the_deciding_child() -> None:
    # BaseGroupVerifierImpl::verify stops once the group is completed: an OR at the first
    # child that passes, an AND at the first that fails. The second provider is never asked.
    walk = _walk((GOOD,), (FORGED,))
    assert AnyNode((ProviderNode(0), ProviderNode(1))).verify(walk) == OK
    assert walk.checked == [GOOD]
    walk = _walk((FORGED,), (GOOD,))
    assert AllNode((ProviderNode(0), ProviderNode(1))).verify(walk) == FORGED_V
    assert walk.checked == [FORGED]


TWO_RULES = istio_requirement(2)


@pytest.mark.parametrize(
    ("tree", "tokens", "expected"),
    [
        pytest.param(istio_requirement(1), [()], _verdict(S.Ok), id="one-rule-no-token"),
        # Every token must be good: a bad one anywhere fails the request (Envoy 1.40).
        pytest.param(istio_requirement(1), [(GOOD, FORGED)], FORGED_V, id="one-rule-good-then-forged"),
        pytest.param(istio_requirement(1), [(EXPIRED, FORGED)], FORGED_V, id="one-rule-last-token-checked-first"),
        pytest.param(istio_requirement(1), [(OTHER_ISSUER,)], UNKNOWN_V, id="one-rule-other-issuer-fails"),
        pytest.param(TWO_RULES, [(GOOD,), ()], _verdict(S.Ok), id="two-rules-own-locations"),
        # A token at a location both rules read: its own rule passes the outer OR.
        pytest.param(TWO_RULES, [(OTHER_ISSUER,), (GOOD,)], _verdict(S.Ok), id="two-rules-shared-location"),
        # Nothing passes: the outer OR reports the AND's status, the first failing rule's.
        pytest.param(TWO_RULES, [(EXPIRED,), (OTHER_ISSUER,)], EXPIRED_V, id="two-rules-error-over-unknown-issuer"),
        pytest.param(TWO_RULES, [(OTHER_ISSUER, GOOD), (GOOD, OTHER_ISSUER)], UNKNOWN_V, id="two-rules-each-sees-the-other"),
        pytest.param(TWO_RULES, [(), (FORGED,)], FORGED_V, id="two-rules-missed-and-forged"),
        pytest.param(ALLOW_ALL, [], _verdict(S.Ok), id="no-rules"),
    ],
)  # fmt: skip
def test_tree_verdicts(
    tree: Verifier, tokens: list[tuple[Token, ...]], expected: Verdict[Token]
) -> None:
    assert tree.verify(_walk(*tokens)) == expected

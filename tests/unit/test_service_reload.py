"""A reload lets the old configuration go: after the first Check under a new generation,
nothing the service keeps between requests (remembered answers, authentication outcomes,
401 decisions and answers, built responses) holds anything of the old one, and the new one
answers as a fresh service would."""

from __future__ import annotations

import gc
import types
from pathlib import Path

from extauthz.authn.providers import ProviderSet
from tests.support.checks import (
    ALICE,
    BASE,
    BOB,
    DENIED,
    OK,
    TOKENS,
    UNAUTHENTICATED,
    authn,
    codes,
    policy,
    serve,
    src,
    wire,
)

REQUIRE_TOKEN = authn() + policy(src('requestPrincipals: ["*"]'))


def _held(thing: object) -> list[object]:
    """What refers to `thing`, the frames of this test aside."""
    gc.collect()
    return [r for r in gc.get_referrers(thing) if not isinstance(r, types.FrameType)]


def test_the_old_providers_are_let_go_after_a_reload(tmp_path: Path) -> None:
    served = serve(tmp_path, REQUIRE_TOKEN)
    alice = BASE.with_headers(authorization=f"Bearer {ALICE}")
    garbage = BASE.with_headers(authorization=f"Bearer {TOKENS['garbage']}")
    forged = BASE.with_headers(authorization=f"Bearer {TOKENS['bad-signature']}")
    # Twice each: an accepted outcome, a remembered answer, 401s for junk and a forgery.
    assert codes(served.check(alice, garbage, forged, alice, garbage, forged)) == [
        OK, UNAUTHENTICATED, UNAUTHENTICATED] * 2  # fmt: skip
    old = served.store.current.providers
    assert isinstance(old, ProviderSet)
    assert _held(old)  # the snapshot, and the caches' entries

    served.reload(REQUIRE_TOKEN + "\n# the same policies, read again\n")
    assert served.store.current.providers is not old
    bob = BASE.with_headers(authorization=f"Bearer {BOB}")
    assert codes(served.check(bob)) == [OK]  # the first Check under the new generation
    assert _held(old) == []

    # The new generation is answered, and remembered, as before.
    answers = served.check(alice, garbage, forged, alice, garbage, forged)
    assert codes(answers) == [OK, UNAUTHENTICATED, UNAUTHENTICATED] * 2
    for request, answer in zip((alice, garbage, forged), answers, strict=False):
        assert wire(answer) == wire(served.fresh(request.build()))
    assert answers[3].dynamic_metadata.fields["generation"].number_value == 2
    assert served.service.memo.hits >= 1


def test_a_reload_forgets_nothing_a_fresh_service_would_answer_otherwise(tmp_path: Path) -> None:
    """A policy change across a reload: the 401s and denials of the old generation are not
    served from what was kept for it."""
    served = serve(tmp_path, REQUIRE_TOKEN)
    garbage = BASE.with_headers(authorization=f"Bearer {TOKENS['garbage']}")
    anonymous = BASE
    assert codes(served.check(garbage, anonymous, garbage, anonymous)) == [
        UNAUTHENTICATED, DENIED] * 2  # fmt: skip
    served.reload(policy(src('requestPrincipals: ["*"]')))  # no RequestAuthentication now
    # Without a JWT rule the junk token is not looked at: no 401, the policy denies.
    answers = served.check(garbage, anonymous, garbage)
    assert codes(answers) == [DENIED, DENIED, DENIED]
    for request, answer in zip((garbage, anonymous, garbage), answers, strict=True):
        assert wire(answer) == wire(served.fresh(request.build()))

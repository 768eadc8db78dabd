"""Rejections of tokens that do not parse are remembered by where the tokens were and why
each fails, not by their text: a client sending new junk on every request costs a parse and
a lookup. The answer must be the one a fresh authentication gives, whatever came before."""

from __future__ import annotations

import base64
import json
from itertools import count

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn import authenticate as authenticate_module
from extauthz.authn.authenticate import authenticate
from extauthz.authn.cache import MAX_MALFORMED_TOKENS, TokenCache
from extauthz.authn.keys import KeySet
from extauthz.authn.status import JwtStatus
from tests.support.config import snapshot_from
from tests.support.tokens import ISSUER, NOW, claims, jwks_of, rsa_key

KEY = rsa_key()
JWKS = jwks_of(KEY)
# Two rules: the default locations, and a header of its own with a prefix.
PROVIDERS = snapshot_from(
    "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
    "metadata: {name: jwt, namespace: foo}\nspec:\n  jwtRules:\n"
    f"  - issuer: {ISSUER}\n    jwks: {json.dumps(JWKS)}\n"
    f"  - issuer: other\n    jwks: {json.dumps(JWKS)}\n"
    "    fromHeaders: [{name: x-jwt, prefix: 'Token '}]\n"
).providers
GOOD = KEY.sign(claims())
_numbers = count()


def no_remote(uri: str, now: float) -> KeySet | None:
    return None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def junk(kind: str) -> str:
    """A token never sent before that fails to parse in the named way."""
    n = next(_numbers)
    header = _b64('{"alg":"RS256"}')
    return {
        "shape": f"a{n}.b{n}",
        "base64": f"!!{n}.{_b64('{}')}.c2ln",
        "header-json": f"{_b64(f'no json {n}')}.{_b64('{}')}.c2ln",
        "payload-json": f"{header}.{_b64(f'{{oops {n}')}.c2ln",
        "no-alg": f"{_b64(json.dumps({'n': n}))}.{_b64('{}')}.c2ln",
    }[kind]


def request(
    authorization: str | None = None, x_jwt: str | None = None, param: str | None = None
) -> RequestAttributes:
    headers = {}
    if authorization is not None:
        headers["authorization"] = f"Bearer {authorization}"
    if x_jwt is not None:
        headers["x-jwt"] = f"Token {x_jwt}"
    query = f"access_token={param}" if param is not None else ""
    return RequestAttributes(headers=headers, query=query)


KINDS = ("shape", "base64", "header-json", "payload-json", "no-alg")
SHAPES = [
    pytest.param(lambda k: request(authorization=junk(k)), id="authorization"),
    pytest.param(lambda k: request(x_jwt=junk(k)), id="own-header"),
    pytest.param(lambda k: request(param=junk(k)), id="query"),
    pytest.param(lambda k: request(authorization=junk(k), x_jwt=junk(k)), id="two-places"),
    pytest.param(lambda k: request(authorization=junk(k), param=GOOD), id="beside-a-good-one"),
    pytest.param(lambda k: request(authorization=GOOD, x_jwt=junk(k)), id="good-then-junk"),
]


@pytest.mark.parametrize("make", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_answers_equal_a_fresh_authentication(make, kind: str) -> None:  # type: ignore[no-untyped-def]
    cache = TokenCache()
    for _ in range(3):  # the first fills the cache, the others may be answered from it
        attrs = make(kind)
        assert authenticate(attrs, PROVIDERS, no_remote, NOW, cache) == authenticate(
            attrs, PROVIDERS, no_remote, NOW
        )


def test_new_junk_is_walked_once_per_place_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = []
    real = authenticate_module.Walk

    def counting(*args: object, **kwargs: object) -> object:
        walks.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(authenticate_module, "Walk", counting)
    cache = TokenCache()
    statuses = set()
    for kind in KINDS:
        for _ in range(20):
            result = authenticate(
                request(authorization=junk(kind)), PROVIDERS, no_remote, NOW, cache
            )
            statuses.add(result.status)
    # One walk per reason, not one per token (100 tokens).
    assert len(walks) == len(statuses) == len(cache.malformed)
    assert JwtStatus.JwtBadFormat in statuses and JwtStatus.JwtHeaderBadAlg in statuses
    assert len(statuses) >= 4
    # A parsable token is never answered from there.
    assert authenticate(request(authorization=GOOD), PROVIDERS, no_remote, NOW, cache).is_ok
    assert len(walks) == len(statuses) + 1


def test_the_remembered_rejections_are_bounded() -> None:
    cache = TokenCache()
    too_many = RequestAttributes(
        header_lists={
            "authorization": tuple(
                f"Bearer {junk('shape')}" for _ in range(MAX_MALFORMED_TOKENS + 1)
            )
        }
    )
    assert not authenticate(too_many, PROVIDERS, no_remote, NOW, cache).is_ok
    assert len(cache.malformed) == 0  # more tokens than an entry may stand for: not kept
    for shapes in range(1, 400):
        attrs = RequestAttributes(
            header_lists={
                "authorization": tuple(f"Bearer {junk('shape')}" for _ in range(shapes % 16 + 1))
            },
            query=f"access_token={junk('base64')}" if shapes % 2 else "",
        )
        authenticate(attrs, PROVIDERS, no_remote, NOW, cache)
    assert 0 < len(cache.malformed) <= cache.malformed.max_entries


def test_one_cache_for_every_shape_in_any_order() -> None:
    """Places and reasons of one request must not answer another's: all shapes and kinds
    through one cache, shuffled, each answer equal to a fresh authentication."""
    import random

    makers = [param.values[0] for param in SHAPES]
    plan = [(make, kind) for make in makers for kind in KINDS] * 4
    random.Random(7).shuffle(plan)
    cache = TokenCache()
    for make, kind in plan:
        attrs = make(kind)
        assert authenticate(attrs, PROVIDERS, no_remote, NOW, cache) == authenticate(
            attrs, PROVIDERS, no_remote, NOW
        )
    assert len(cache.malformed) > 3

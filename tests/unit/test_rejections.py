"""401 decisions made once per distinct rejection (decision._rejection) and answered from
there by the service: a flood of junk or forged tokens costs a parse and two lookups. Every
such decision and answer must equal the one a fresh decision gives, whatever came before."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import replace
from itertools import count
from pathlib import Path

from extauthz.attributes import RequestAttributes
from extauthz.authn.keys import KeySet
from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload, parse_labels
from extauthz.decision import (
    MAX_REJECTION_CHARS,
    Verdict,
    decide,
    quoted_chars,
    rejections,
)
from extauthz.server.envoy_api import to_attributes
from extauthz.snapshot.compile import compile_snapshot
from tests.support.checks import (
    BASE,
    IMPOSTOR,
    KEY,
    NOW,
    UNAUTHENTICATED,
    Req,
    authn,
    bearer,
    codes,
    serve,
    wire,
)
from tests.support.config import snapshot_from
from tests.support.tokens import claims

SNAPSHOT = snapshot_from(authn())
_numbers = count()


def no_remote(uri: str, now: float) -> KeySet | None:
    return None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


RS256_HEADER = _b64('{"alg":"RS256"}')


def rejected_token(kind: str) -> str:
    """A token never sent before that is rejected in the named way."""
    n = next(_numbers)
    makers: dict[str, Callable[[], str]] = {
        "shape": lambda: f"a{n}.b{n}",
        "base64": lambda: f"!!{n}.{_b64('{}')}.c2ln",
        "header-json": lambda: f"{_b64(f'no json {n}')}.{_b64('{}')}.c2ln",
        "payload-json": lambda: f"{RS256_HEADER}.{_b64(f'{{oops {n}')}.c2ln",
        "forged": lambda: IMPOSTOR.sign(claims(iat=NOW, exp=NOW + 3600, jti=f"j{n}")),
        "forged-as-bob": lambda: IMPOSTOR.sign(
            claims(sub="bob", iat=NOW, exp=NOW + 3600, jti=f"j{n}")
        ),
        "expired": lambda: KEY.sign(claims(iat=NOW - 7200, exp=NOW - 3600, jti=f"j{n}")),
        "unknown-issuer": lambda: KEY.sign(claims(iss="https://elsewhere.example", jti=f"j{n}")),
    }
    return makers[kind]()


KINDS = ("shape", "base64", "header-json", "payload-json", "forged", "forged-as-bob", "expired", "unknown-issuer")  # fmt: skip
URLS = [
    BASE,
    replace(BASE, path="/other?x=1"),
    replace(BASE, host="elsewhere.example"),
    BASE.with_headers(x_forwarded_proto="https"),
    BASE.with_headers(x_envoy_original_path="/before/rewrite"),
]


def _attrs(request: Req, kind: str) -> RequestAttributes:
    with_token = replace(request, headers=request.headers + bearer(rejected_token(kind)))
    return to_attributes(with_token.build())


def test_every_remembered_401_equals_a_fresh_one() -> None:
    """All kinds at all URLs through one cache, shuffled, against two generations."""
    other_generation = compile_snapshot(
        parse_documents(authn(), "t.yaml"),
        Workload("foo", parse_labels("app=httpbin")),
        "istio-system",
        2,
    )
    assert other_generation.generation != SNAPSHOT.generation
    plan = [(url, kind, snap) for url in URLS for kind in KINDS for snap in (SNAPSHOT, other_generation)] * 3  # fmt: skip
    random.Random(11).shuffle(plan)
    kept = rejections()
    for url, kind, snapshot in plan:
        attrs = _attrs(url, kind)
        remembered = decide(attrs, snapshot, no_remote, NOW, None, kept)
        assert remembered.verdict is Verdict.UNAUTHENTICATED
        assert remembered == decide(attrs, snapshot, no_remote, NOW)
        assert remembered.generation_number == snapshot.generation
    assert 0 < len(kept) <= len(URLS) * len(KINDS)


def test_new_junk_gets_the_decision_made_for_the_first() -> None:
    kept = rejections()
    for kind in KINDS:
        first = decide(_attrs(BASE, kind), SNAPSHOT, no_remote, NOW, None, kept)
        again = decide(_attrs(BASE, kind), SNAPSHOT, no_remote, NOW, None, kept)
        assert again is first, kind
        elsewhere = decide(_attrs(URLS[1], kind), SNAPSHOT, no_remote, NOW, None, kept)
        assert elsewhere is not first and elsewhere.response_headers != first.response_headers
    # A forged token claiming another subject is another rejection (the log names it).
    forged = decide(_attrs(BASE, "forged"), SNAPSHOT, no_remote, NOW, None, kept)
    as_bob = decide(_attrs(BASE, "forged-as-bob"), SNAPSHOT, no_remote, NOW, None, kept)
    assert forged is not as_bob and as_bob.authn.subject == "bob" != forged.authn.subject


def test_decisions_quoting_much_client_text_are_made_each_time() -> None:
    kept = rejections()
    long_path = replace(BASE, host="h" * MAX_REJECTION_CHARS)
    one = decide(_attrs(long_path, "shape"), SNAPSHOT, no_remote, NOW, None, kept)
    two = decide(_attrs(long_path, "shape"), SNAPSHOT, no_remote, NOW, None, kept)
    assert quoted_chars(one) > MAX_REJECTION_CHARS
    assert one == two and one is not two
    assert len(kept) == 0
    big_subject = to_attributes(replace(BASE, headers=bearer(IMPOSTOR.sign(claims(sub="s" * 3000)))).build())  # fmt: skip
    decide(big_subject, SNAPSHOT, no_remote, NOW, None, kept)
    assert len(kept) == 0
    for n in range(3 * kept.max_entries):
        decide(_attrs(replace(BASE, path=f"/{n}"), "shape"), SNAPSHOT, no_remote, NOW, None, kept)
    assert len(kept) == kept.max_entries


def test_the_service_answers_a_flood_with_the_first_answer(tmp_path: Path) -> None:
    served = serve(tmp_path, authn())
    requests = [replace(url, headers=bearer(rejected_token(kind))) for kind in KINDS for url in URLS[:2] for _ in range(3)]  # fmt: skip
    answers = served.check(*requests)
    assert codes(answers) == [UNAUTHENTICATED] * len(requests)
    for request, answer in zip(requests, answers, strict=True):
        assert wire(answer) == wire(served.fresh(request.build()))
    # Each (kind, URL) three times in a row: the second and third are the first's object.
    for i in range(0, len(answers), 3):
        assert answers[i + 1] is answers[i] and answers[i + 2] is answers[i]
    assert answers[0] is not answers[3]  # another URL


def test_quoted_chars_counts_the_client_text() -> None:
    attrs = _attrs(BASE, "forged")
    decision = decide(attrs, SNAPSHOT, no_remote, NOW)
    challenge = dict(decision.response_headers)["www-authenticate"]
    assert quoted_chars(decision) == sum(
        map(len, (decision.authn.issuer, decision.authn.subject, decision.authn.kid, challenge))
    )
    assert "http://api.example.com/p" in challenge

"""Answers already given, found again by the request values their decision read.

Most traffic repeats itself: the same client token on the same few routes. For those the
whole Check (conversion, authentication, policies, response) has one answer already, and
finding it by the values listed in the snapshot's DecisionInputs is all that is left to do.

An answer is reused only
- for the very Snapshot that decided it (same generation, same workload),
- while its authentication outcome holds (authn.result.Validity: tokens inside nbf/exp, the
  same remote key sets), and
- when it was an allow or a policy denial: answers to invalid tokens are not remembered
  (their challenge names each request's URL, and they are cheap to give again).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from extauthz.authn.result import ALWAYS, KeyLookup
from extauthz.bounded import BoundedCache
from extauthz.decision import Decision, Verdict
from extauthz.snapshot.compile import Snapshot

DEFAULT_MEMO_SIZE = 4096
Response = TypeVar("Response")


class DecisionMemo(Generic[Response]):
    def __init__(self, max_entries: int = DEFAULT_MEMO_SIZE) -> None:
        # Oldest first; a hit does not reorder (that would cost every hit), so eviction is
        # by age of the answer, and an evicted hot answer costs one full decision to redo.
        # (Keys longer than envoy_api.MAX_KEY_CHARS are never made.)
        self._entries: BoundedCache[Hashable, tuple[Snapshot, Decision, Response]] = BoundedCache(
            max_entries, refresh_on_hit=False
        )
        self.hits = 0
        self.misses = 0

    def get(
        self, key: Hashable, snapshot: Snapshot, now: float, keys: KeyLookup
    ) -> Response | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] is snapshot:
            validity = entry[1].authn.validity
            if validity is ALWAYS or (validity is not None and validity.holds(now, keys)):
                self.hits += 1
                return entry[2]
        self.misses += 1
        return None

    def put(self, key: Hashable, snapshot: Snapshot, decision: Decision, answer: Response) -> None:
        if decision.verdict is Verdict.UNAUTHENTICATED or decision.authn.validity is None:
            return
        if decision.generation_number != snapshot.generation:
            return  # decided under another configuration than the key was made for
        self._entries.put(key, (snapshot, decision, answer))

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

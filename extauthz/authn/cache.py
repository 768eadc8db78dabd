"""Tokens whose signature has been checked, so a repeated token costs a dict lookup.

An entry is tied to the exact key set object that checked it: when a JWKS is replaced, its
old entries stop matching. Time, issuer and audience are still checked on every use.
Signatures that did not verify are kept apart (`rejected`), so a client repeating a
tampered token costs a lookup too, not an RSA or ECDSA verification each time.
"""

from __future__ import annotations

from collections import OrderedDict

from extauthz.authn.jwt import Jwt
from extauthz.authn.keys import KeySet
from extauthz.authn.outcomes import AcceptedOutcomes
from extauthz.authn.status import JwtStatus

DEFAULT_CACHE_SIZE = 10_000
MAX_REJECTED = 1_000
MAX_REJECTED_TOKEN_CHARS = 8192
# Verified tokens longer than this are verified each time rather than kept: the cache then
# holds at most DEFAULT_CACHE_SIZE x 16 KiB of tokens, however large the tokens an IdP signs
# (and a token may be up to 64 KiB).
MAX_CACHED_TOKEN_CHARS = 16_384


class VerifiedTokenCache:
    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[KeySet, Jwt]] = OrderedDict()
        self._rejected: OrderedDict[str, tuple[KeySet, Jwt, JwtStatus]] = OrderedDict()
        self._max_rejected = min(max_entries, MAX_REJECTED)
        # Whole outcomes for repeated tokens (see outcomes.py): a cached token then skips
        # parsing, checking and building the result.
        self.outcomes = AcceptedOutcomes(max_entries)

    def get(self, token: str, keys: KeySet) -> Jwt | None:
        entry = self.lookup(token)
        return entry[1] if entry is not None and entry[0] is keys else None

    def lookup(self, token: str) -> tuple[KeySet, Jwt] | None:
        """The parsed token and the key set that verified it, if it was seen."""
        entry = self._entries.get(token)
        if entry is not None:
            self._entries.move_to_end(token)
        return entry

    def put(self, token: str, keys: KeySet, jwt: Jwt) -> None:
        if len(token) > MAX_CACHED_TOKEN_CHARS:
            return
        self._entries[token] = (keys, jwt)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def rejected(self, token: str) -> tuple[KeySet, Jwt, JwtStatus] | None:
        """The parsed token, the key set its signature failed against, and the status."""
        return self._rejected.get(token)

    def put_rejected(self, token: str, keys: KeySet, jwt: Jwt, status: JwtStatus) -> None:
        # Anyone can make tokens whose signature fails, as long as they like: only the
        # usual sizes are kept, and fewer of them (at most 1,000 tokens of 8 KiB).
        if len(token) > MAX_REJECTED_TOKEN_CHARS:
            return
        self._rejected[token] = (keys, jwt, status)
        self._rejected.move_to_end(token)
        while len(self._rejected) > self._max_rejected:
            self._rejected.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

"""Tokens whose signature has been checked, so a repeated token costs a dict lookup.

An entry is tied to the exact key set object that checked it: when a JWKS is replaced, its
old entries stop matching. Time, issuer and audience are still checked on every use.
Signatures that did not verify are kept apart (`rejected`), so a client repeating a
tampered token costs a lookup too, not an RSA or ECDSA verification each time.
"""

from __future__ import annotations

from extauthz.authn.extract import Location
from extauthz.authn.jwt import Jwt, header_cache
from extauthz.authn.keys import KeySet
from extauthz.authn.outcomes import AcceptedOutcomes
from extauthz.authn.providers import ProviderSet
from extauthz.authn.result import AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.bounded import BoundedCache

DEFAULT_CACHE_SIZE = 10_000
MAX_REJECTED = 1_000
MAX_REJECTED_TOKEN_CHARS = 8192
# Verified tokens longer than this are verified each time rather than kept: the cache then
# holds at most DEFAULT_CACHE_SIZE x 16 KiB of tokens, however large the tokens an IdP signs
# (and a token may be up to 64 KiB).
MAX_CACHED_TOKEN_CHARS = 16_384
# Remembered rejections of unparsable tokens: few shapes of requests (a few locations, a
# few dozen statuses), so few entries, each for at most 16 tokens in one request.
MAX_MALFORMED = 256
MAX_MALFORMED_TOKENS = 16
# Per provider: where each token was found and why it does not parse.
MalformedKey = tuple[tuple[tuple[Location, JwtStatus], ...], ...]


class TokenCache:
    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        self._entries: BoundedCache[str, tuple[KeySet, Jwt]] = BoundedCache(
            max_entries, max_entry_cost=MAX_CACHED_TOKEN_CHARS
        )
        # Anyone can make tokens whose signature fails, as long as they like: only the
        # usual sizes are kept, and fewer of them (at most 1,000 tokens of 8 KiB).
        self._rejected: BoundedCache[str, tuple[KeySet, Jwt, JwtStatus]] = BoundedCache(
            min(max_entries, MAX_REJECTED), MAX_REJECTED_TOKEN_CHARS, refresh_on_hit=False
        )
        # Whole outcomes for repeated tokens (see outcomes.py): a cached token then skips
        # parsing, checking and building the result.
        self.outcomes = AcceptedOutcomes(max_entries)
        # Parsed JWT headers (an issuer uses a few): a new token skips parsing its header.
        self.headers = header_cache()
        # Rejections of tokens that do not even parse (see authenticate.py): such a token
        # fails the same way for every rule, so the outcome depends on where tokens were
        # found and why each failed, not on the junk itself. Keyed by the ProviderSet's id
        # and the (where, why) of every token; the entry keeps its ProviderSet to check it.
        self.malformed: BoundedCache[tuple[int, MalformedKey], tuple[ProviderSet, AuthnResult]]
        self.malformed = BoundedCache(MAX_MALFORMED, max_entry_cost=MAX_MALFORMED_TOKENS)

    def forget_providers(self) -> None:
        """Drop the outcomes kept for ProviderSets (accepted and unparsable tokens). After a
        reload no ProviderSet of the old configuration is used again, so these entries
        could never match; each would keep its ProviderSet, and with it the old rules and
        inline keys, alive until evicted (up to 10,000 entries, one reload's worth each)."""
        self.outcomes.clear()
        self.malformed.clear()

    def get(self, token: str, keys: KeySet) -> Jwt | None:
        entry = self.lookup(token)
        return entry[1] if entry is not None and entry[0] is keys else None

    def lookup(self, token: str) -> tuple[KeySet, Jwt] | None:
        """The parsed token and the key set that verified it, if it was seen."""
        return self._entries.get(token)

    def put(self, token: str, keys: KeySet, jwt: Jwt) -> None:
        self._entries.put(token, (keys, jwt), cost=len(token))

    def rejected(self, token: str) -> tuple[KeySet, Jwt, JwtStatus] | None:
        """The parsed token, the key set its signature failed against, and the status."""
        return self._rejected.get(token)

    def put_rejected(self, token: str, keys: KeySet, jwt: Jwt, status: JwtStatus) -> None:
        self._rejected.put(token, (keys, jwt, status), cost=len(token))

    def __len__(self) -> int:
        return len(self._entries)

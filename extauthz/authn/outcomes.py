"""Accepted authentication outcomes, remembered for the same tokens at the same places.

`authenticate` is a pure function of (the tokens found, the providers, their keys, now).
For a request whose tokens were all seen before, its whole outcome can be reused while:
- the providers are the same object (same configuration generation and workload),
- every remote key set involved is the same object (no rotation since),
- `now` is inside every accepted token's nbf/exp window (with the clock skew).
Only successful outcomes are kept, and only when no checked token failed on time or on
missing keys (those failures can turn into something else as time passes).
"""

from __future__ import annotations

from extauthz.authn.extract import Location
from extauthz.authn.keys import KeySet
from extauthz.authn.providers import ProviderSet
from extauthz.authn.result import AuthnResult, KeyLookup
from extauthz.bounded import BoundedCache
from extauthz.records import record

MAX_TOKENS_CHARS = 16_384  # the tokens of one remembered outcome, together
TokensKey = tuple[tuple[tuple[Location, str], ...], ...]  # per provider: (where, token) found


@record
class _Outcome:
    providers: ProviderSet
    result: AuthnResult  # its `validity` says how long it holds


class AcceptedOutcomes:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: BoundedCache[tuple[int, TokensKey], _Outcome] = BoundedCache(
            max_entries, max_entry_cost=MAX_TOKENS_CHARS
        )

    @staticmethod
    def remote_keys(
        providers: ProviderSet, keys: KeyLookup, now: float
    ) -> tuple[tuple[str, KeySet | None], ...]:
        """The remote key sets an outcome of these providers depends on, as they are now."""
        return tuple(
            (p.jwks_uri, keys(p.jwks_uri, now))
            for p in providers.providers
            if p.inline_keys is None
        )

    def get(
        self, providers: ProviderSet, tokens: TokensKey, now: int, keys: KeyLookup
    ) -> AuthnResult | None:
        outcome = self._entries.get((id(providers), tokens))
        if outcome is None or outcome.providers is not providers:
            return None
        validity = outcome.result.validity
        if validity is None or not validity.holds(now, keys):
            return None
        return outcome.result

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, providers: ProviderSet, tokens: TokensKey, result: AuthnResult) -> None:
        """Remember an accepted `result`, which carries its Validity. Not when the tokens
        are long: one valid token lets a request pass with other, invalid tokens beside it
        (Envoy's allow_missing), and those a client can make as long and as new as it likes."""
        assert result.validity is not None
        cost = sum(len(token) for row in tokens for _, token in row)
        self._entries.put((id(providers), tokens), _Outcome(providers, result), cost)

"""Key state per remote JWKS: the last good key set and how fetching goes. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass

from extauthz.authn.keys import KeySet

DEFAULT_MAX_STALE_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class UriState:
    uri: str
    keys: KeySet | None = None
    fetched_at: float | None = None  # wall-clock time of the last good fetch
    last_error: str = ""
    failures: int = 0  # consecutive failed fetches
    jwks_uri: str = ""  # where the keys really came from (differs after OIDC discovery)

    @property
    def has_keys(self) -> bool:
        return self.keys is not None


class KeyStore:
    """One entry per URI, shared by every rule naming it. Readers get whole immutable states.

    Keys older than `max_stale_seconds` (no good fetch since) are no longer served: tokens of
    that issuer then fail closed until a fetch succeeds again. Staleness is judged at each
    lookup, against the `now` the caller decides with (the store reads no clock).
    """

    def __init__(self, max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS) -> None:
        self.max_stale_seconds = max_stale_seconds
        self._states: dict[str, UriState] = {}

    def keys(self, uri: str, now: float) -> KeySet | None:
        state = self._states.get(uri)
        if state is None or state.keys is None or state.fetched_at is None:
            return None
        if now - state.fetched_at > self.max_stale_seconds:
            return None
        return state.keys

    def state(self, uri: str) -> UriState:
        return self._states.get(uri) or UriState(uri)

    def states(self) -> list[UriState]:
        return [self._states[uri] for uri in sorted(self._states)]

    def track(self, uris: set[str]) -> None:
        """Keep state for these URIs only (after a config change)."""
        for uri in uris - set(self._states):
            self._states[uri] = UriState(uri)
        for uri in set(self._states) - uris:
            del self._states[uri]

    def record_success(self, uri: str, keys: KeySet, now: float, jwks_uri: str = "") -> None:
        self._states[uri] = UriState(uri, keys, now, jwks_uri=jwks_uri or uri)

    def record_failure(self, uri: str, error: str) -> None:
        # The last good keys keep serving while the endpoint misbehaves.
        old = self.state(uri)
        self._states[uri] = UriState(
            uri, old.keys, old.fetched_at, error, old.failures + 1, old.jwks_uri
        )

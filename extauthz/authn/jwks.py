"""Key state per JWKS URI: the last good key set and how its fetching goes. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass

from extauthz.authn.keys import KeySet


@dataclass(frozen=True, slots=True)
class UriState:
    uri: str
    keys: KeySet | None = None
    fetched_at: float | None = None  # wall-clock time of the last good fetch
    last_error: str = ""
    failures: int = 0  # consecutive failed fetches

    @property
    def has_keys(self) -> bool:
        return self.keys is not None


class KeyStore:
    """One entry per URI, shared by every rule naming it. Readers get whole immutable states."""

    def __init__(self) -> None:
        self._states: dict[str, UriState] = {}

    def keys(self, uri: str) -> KeySet | None:
        state = self._states.get(uri)
        return state.keys if state else None

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

    def record_success(self, uri: str, keys: KeySet, now: float) -> None:
        self._states[uri] = UriState(uri, keys, now)

    def record_failure(self, uri: str, error: str) -> None:
        # The last good keys keep serving while the endpoint misbehaves.
        old = self.state(uri)
        self._states[uri] = UriState(uri, old.keys, old.fetched_at, error, old.failures + 1)

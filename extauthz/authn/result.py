"""The outcome of authentication, handed from the authn phase to authz and the response."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from types import MappingProxyType
from typing import Any

from extauthz.authn.keys import KeySet
from extauthz.authn.status import JwtStatus
from extauthz.records import record

_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})
# The remote key set of a JWKS URI as it serves at `now` (None: never fetched, or stale).
KeyLookup = Callable[[str, float], KeySet | None]


@record
class Validity:
    """How long an outcome stays the same for the same tokens at the same places: while `now`
    is inside every accepted token's nbf/exp window (skew included) and every remote key set
    involved is still the same object (no rotation since)."""

    valid_from: float = float("-inf")
    valid_until: float = float("inf")
    remote_keys: tuple[tuple[str, KeySet | None], ...] = ()

    def holds(self, now: float, keys: KeyLookup) -> bool:
        if not self.valid_from <= now <= self.valid_until:
            return False
        if not self.remote_keys:  # inline keys: no generator to make on every remembered hit
            return True
        return all(keys(uri, now) is key_set for uri, key_set in self.remote_keys)


ALWAYS = Validity()  # an outcome that reads no token: nothing time or keys can change


@record
class AuthnResult:
    status: JwtStatus  # Ok for a verified token and for a request without any token
    principal: str = ""  # "<iss>/<sub>" of the verified token, Istio's request principal
    claims: Mapping[str, Any] = field(default_factory=lambda: _NO_CLAIMS)
    issuer: str = ""
    subject: str = ""
    kid: str = ""
    # What the upstream request must lose or gain once the token is accepted.
    headers_to_remove: tuple[str, ...] = ()
    params_to_remove: tuple[str, ...] = ()
    headers_to_set: tuple[tuple[str, str], ...] = ()
    # On a key failure of a remote key set: which one, so the edge may refetch it.
    jwks_uri: str = ""
    # Verified payloads by issuer, for Envoy's dynamic metadata (jwt_authn's payload_in_metadata).
    payloads: Mapping[str, Any] = field(default_factory=lambda: _NO_CLAIMS)
    # Set when the outcome may be reused for the same tokens (None: decide again each time).
    validity: Validity | None = field(default=None, compare=False)

    @property
    def is_ok(self) -> bool:
        return self.status is JwtStatus.Ok

    @property
    def has_identity(self) -> bool:
        return bool(self.principal)


ANONYMOUS = AuthnResult(JwtStatus.Ok, validity=ALWAYS)

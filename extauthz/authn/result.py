"""The outcome of authentication, handed from the authn phase to authz and the response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from extauthz.authn.status import JwtStatus

_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
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

    @property
    def is_ok(self) -> bool:
        return self.status is JwtStatus.Ok

    @property
    def has_identity(self) -> bool:
        return bool(self.principal)


ANONYMOUS = AuthnResult(JwtStatus.Ok)

"""extauthz: Istio's JWT authentication and authorization for any Envoy, as an ext_authz service."""

from __future__ import annotations

__version__ = "0.1.0"

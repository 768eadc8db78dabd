"""One AuthorizationPolicy from Python values, decided for one request: the helper of the
test_authz_conformance_* tables (each row measured against Envoy 1.40's RBAC filter)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import ANONYMOUS, AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import evaluate
from tests.support.config import snapshot_from


def policy_yaml(action: str, rules: list[dict[str, Any]] | None, name: str = "p") -> str:
    spec: dict[str, Any] = {"action": action}
    if rules is not None:
        spec["rules"] = rules
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "foo"},
        "spec": spec,
    }
    return yaml.safe_dump(document, sort_keys=False)


def is_allowed(
    action: str,
    rules: list[dict[str, Any]] | None,
    attrs: RequestAttributes,
    authn: AuthnResult = ANONYMOUS,
) -> bool:
    return evaluate(snapshot_from(policy_yaml(action, rules)).policies, attrs, authn).is_allowed


def verified(claims: Mapping[str, Any]) -> AuthnResult:
    """A verified token with this payload, as authenticate() hands it to authz."""
    iss, sub = claims.get("iss", ""), claims.get("sub", "")
    return AuthnResult(
        JwtStatus.Ok,
        principal=f"{iss}/{sub}",
        claims=MappingProxyType(dict(claims)),
        issuer=str(iss),
        subject=str(sub),
    )

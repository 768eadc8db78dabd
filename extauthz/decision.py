"""decide(): the pure core. Request attributes + config snapshot + keys -> Decision."""

from __future__ import annotations

import enum

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import authenticate
from extauthz.authn.cache import TokenCache
from extauthz.authn.result import AuthnResult, KeyLookup
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import AuthzVerdict, evaluate
from extauthz.records import record
from extauthz.snapshot.compile import Snapshot

# Envoy's RBAC filter, which Istio's AuthorizationPolicy compiles to, answers a denial so.
RBAC_DENIED_BODY = "RBAC: access denied"
# Envoy's jwt_authn truncates the path it puts in the realm to this length.
_MAX_REALM_PATH = 256


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    UNAUTHENTICATED = "unauthenticated"


@record
class Decision:
    verdict: Verdict
    http_status: int
    reason: str
    authn: AuthnResult
    authz: AuthzVerdict | None = None
    body: str = ""
    response_headers: tuple[tuple[str, str], ...] = ()  # sent to the client on a denial
    generation_number: int = 0  # the Snapshot.generation that decided (0: no snapshot did)

    @property
    def is_allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


def realm(attrs: RequestAttributes) -> str:
    """Envoy's `buildOriginalUri`: scheme (x-forwarded-proto), host and the original path."""
    scheme = attrs.headers.get("x-forwarded-proto") or attrs.scheme or "http"
    path = attrs.headers.get("x-envoy-original-path") or attrs.original_path
    return f"{scheme}://{attrs.host}{path[:_MAX_REALM_PATH]}"


def unauthenticated(
    attrs: RequestAttributes, authn: AuthnResult, generation_number: int
) -> Decision:
    status = authn.status
    challenge = f'Bearer realm="{realm(attrs)}", error="invalid_token"'
    return Decision(
        verdict=Verdict.UNAUTHENTICATED,
        http_status=status.http_status,
        reason=f"{status.name}: {status.message}",
        authn=authn,
        body=status.message,
        response_headers=(("www-authenticate", challenge),),
        generation_number=generation_number,
    )


def decide(
    attrs: RequestAttributes,
    snapshot: Snapshot,
    remote_keys: KeyLookup,
    now: int,
    cache: TokenCache | None = None,
) -> Decision:
    authn = authenticate(attrs, snapshot.providers, remote_keys, now, cache)
    if not authn.is_ok:
        # RequestAuthentication rejects an invalid token before any AuthorizationPolicy runs.
        return unauthenticated(attrs, authn, snapshot.generation)
    verdict = evaluate(snapshot.policies, attrs, authn)
    if not verdict.is_allowed:
        return Decision(
            Verdict.DENY,
            403,
            verdict.reason,
            authn,
            verdict,
            body=RBAC_DENIED_BODY,
            generation_number=snapshot.generation,
        )
    return Decision(
        Verdict.ALLOW, 200, verdict.reason, authn, verdict, generation_number=snapshot.generation
    )


def internal_error(reason: str, generation_number: int = 0) -> Decision:
    """What every unexpected failure becomes: a denial, never an allow."""
    return Decision(
        Verdict.DENY, 403, f"internal error: {reason}", _NO_IDENTITY, body=RBAC_DENIED_BODY,
        generation_number=generation_number,
    )  # fmt: skip


def refused(reason: str) -> Decision:
    """A request refused before any policy ran (e.g. it names no usable workload): a
    denial with Envoy's RBAC body, whose reason says why."""
    return Decision(Verdict.DENY, 403, reason, _NO_IDENTITY, body=RBAC_DENIED_BODY)


_NO_IDENTITY = AuthnResult(JwtStatus.Ok)  # no validity: an internal error is never remembered

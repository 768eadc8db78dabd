"""decide(): the pure core. Request attributes + config snapshot + keys -> Decision."""

from __future__ import annotations

import enum

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import authenticate
from extauthz.authn.cache import TokenCache
from extauthz.authn.result import AuthnResult, KeyLookup
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import AuthzVerdict, evaluate
from extauthz.bounded import BoundedCache
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


# 401 decisions made (see _rejection), by status, the unverified token's issuer, subject and
# kid, the key set to refetch and the URL the challenge names. A client chooses most of that
# text: an entry quoting more than MAX_REJECTION_CHARS of it is not kept, so the cache holds
# at most MAX_REJECTIONS x 2 KiB of it.
MAX_REJECTIONS = 1024
MAX_REJECTION_CHARS = 2048
RejectionKey = tuple[JwtStatus, str, str, str, str, str]
Rejections = BoundedCache[RejectionKey, Decision]


def rejections() -> Rejections:
    """A cache of 401 decisions for `decide`, owned by whoever owns its TokenCache."""
    return BoundedCache(MAX_REJECTIONS, max_entry_cost=MAX_REJECTION_CHARS)


def realm(attrs: RequestAttributes) -> str:
    """Envoy's `buildOriginalUri`: scheme (x-forwarded-proto), host and the original path."""
    scheme = attrs.headers.get("x-forwarded-proto") or attrs.scheme or "http"
    path = attrs.headers.get("x-envoy-original-path") or attrs.original_path
    return f"{scheme}://{attrs.host}{path[:_MAX_REALM_PATH]}"


def unauthenticated(
    attrs: RequestAttributes, authn: AuthnResult, generation_number: int
) -> Decision:
    return _unauthenticated(realm(attrs), authn, generation_number)


def _unauthenticated(url: str, authn: AuthnResult, generation_number: int) -> Decision:
    status = authn.status
    challenge = f'Bearer realm="{url}", error="invalid_token"'
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
    rejections: Rejections | None = None,
) -> Decision:
    authn = authenticate(attrs, snapshot.providers, remote_keys, now, cache)
    if not authn.is_ok:
        # RequestAuthentication rejects an invalid token before any AuthorizationPolicy runs.
        if rejections is None:
            return unauthenticated(attrs, authn, snapshot.generation)
        return _rejection(realm(attrs), authn, snapshot.generation, rejections)
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


def _rejection(url: str, authn: AuthnResult, generation_number: int, kept: Rejections) -> Decision:
    """unauthenticated(), made once per distinct 401: a flood of junk or forged tokens gets
    the same Decision object again (and the service the answer it built for it). A rejected
    AuthnResult holds its status, the unverified token's issuer, subject and kid, and the
    key set to refetch, nothing else (authenticate._rejected); the 401 adds the URL and the
    generation. A decision quoting more than MAX_REJECTION_CHARS of a client's text is
    made each time."""
    key = (authn.status, authn.issuer, authn.subject, authn.kid, authn.jwks_uri, url)
    found = kept.get(key)
    if found is not None and found.generation_number == generation_number:
        return found
    decision = _unauthenticated(url, authn, generation_number)
    kept.put(key, decision, quoted_chars(decision))
    return decision


def quoted_chars(decision: Decision) -> int:
    """How much of a client's text a 401 decision holds (what MAX_REJECTION_CHARS bounds):
    the unverified token's issuer, subject and kid, the key set's URI and the challenge,
    which names the request's URL."""
    authn = decision.authn
    return (
        len(authn.issuer)
        + len(authn.subject)
        + len(authn.kid)
        + len(authn.jwks_uri)
        + sum(len(value) for _, value in decision.response_headers)
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

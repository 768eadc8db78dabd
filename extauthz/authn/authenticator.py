"""Envoy's authenticator: check the tokens found at one provider's locations.

Each token is checked in Envoy's order (AuthenticatorImpl::startVerify, then verifyKey):
parse, issuer, time (60 s skew), audience, key, signature. What the outcomes add up to is
the verifier tree's business (verifier.py); an Authenticator only says, token by token, what
each provider makes of it.

One Authenticator serves one request and owns everything remembered along the way: the
verified-token cache (a repeated token skips parsing and the signature), the remembered
rejections (a repeated tampered token skips the signature), and the tokens this request has
already parsed (several rules reading one header see the same token: it is parsed once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from extauthz.authn.cache import TokenCache
from extauthz.authn.extract import FoundToken
from extauthz.authn.jwt import HeaderCache, Jwt, check_time, parse_jwt
from extauthz.authn.keys import KeySet
from extauthz.authn.providers import JwtProvider
from extauthz.authn.result import KeyLookup
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature
from extauthz.records import record

CLOCK_SKEW_SECONDS = 60

ParseJwt = Callable[[str, HeaderCache | None], Jwt | JwtStatus]
VerifySignature = Callable[[Jwt, KeySet], JwtStatus]


@record
class Checked:
    """One token checked against one provider."""

    found: FoundToken
    provider: JwtProvider
    status: JwtStatus
    jwt: Jwt | None  # None when the token did not parse


def claims_status(jwt: Jwt, provider: JwtProvider, now: int) -> JwtStatus:
    """The checks before the key, in startVerify's order: issuer, time, audience."""
    if not provider.allows_issuer(jwt.iss):
        return JwtStatus.JwtUnknownIssuer
    time_status = check_time(jwt, now, CLOCK_SKEW_SECONDS)
    if time_status is not JwtStatus.Ok:
        return time_status
    if not provider.allows_audiences(jwt.audiences):
        return JwtStatus.JwtAudienceNotAllowed
    return JwtStatus.Ok


class Authenticator:
    __slots__ = ("_cache", "_now", "_parse", "_parsed", "_remote_keys", "_verify")

    def __init__(
        self,
        remote_keys: KeyLookup,
        now: int,
        cache: TokenCache | None = None,
        parse: ParseJwt = parse_jwt,
        verify: VerifySignature = verify_signature,
    ) -> None:
        self._remote_keys = remote_keys
        self._now = now
        self._cache = cache
        self._parse = parse
        self._verify = verify
        self._parsed: dict[str, Jwt | JwtStatus] = {}

    def verify_tokens(self, provider: JwtProvider, found: Sequence[FoundToken]) -> list[Checked]:
        """Every token found at `provider`'s locations, in the order found."""
        return [self.check(token, provider) for token in found]

    def check(self, found: FoundToken, provider: JwtProvider) -> Checked:
        token, cache = found.token, self._cache
        seen = cache.lookup(token) if cache is not None else None
        rejected = cache.rejected(token) if cache is not None and seen is None else None
        if seen is not None:
            parsed: Jwt | JwtStatus = seen[1]
        elif rejected is not None:
            parsed = rejected[1]
        else:
            parsed = self._parse_once(token)
        if isinstance(parsed, JwtStatus):
            return Checked(found, provider, parsed, None)
        status = claims_status(parsed, provider, self._now)
        if status is JwtStatus.Ok:
            status = self._key_status(token, parsed, provider, seen, rejected)
        return Checked(found, provider, status, parsed)

    def parse_failure(self, token: str) -> JwtStatus | None:
        """Why `token` cannot be parsed (the status every rule's check of it gives), or None
        when it parses (or was parsed before: it is in the caches)."""
        cache = self._cache
        if cache is not None and (cache.lookup(token) or cache.rejected(token)):
            return None
        parsed = self._parse_once(token)
        return parsed if isinstance(parsed, JwtStatus) else None

    def _parse_once(self, token: str) -> Jwt | JwtStatus:
        parsed = self._parsed.get(token)
        if parsed is None:
            headers = self._cache.headers if self._cache is not None else None
            parsed = self._parsed[token] = self._parse(token, headers)
        return parsed

    def _key_status(
        self,
        token: str,
        jwt: Jwt,
        provider: JwtProvider,
        seen: tuple[KeySet, Jwt] | None,
        rejected: tuple[KeySet, Jwt, JwtStatus] | None,
    ) -> JwtStatus:
        """The key and the signature, unless this key set already judged this token."""
        keys = provider.inline_keys or (
            self._remote_keys(provider.jwks_uri, self._now) if provider.jwks_uri else None
        )
        if keys is None:
            # No key set was ever fetched for this issuer: fail closed, as Envoy does.
            return JwtStatus.JwksFetchFail
        if seen is not None and seen[0] is keys:
            return JwtStatus.Ok  # this exact key set verified this exact token before
        if rejected is not None and rejected[0] is keys:
            return rejected[2]  # ... or found its signature wrong
        status = self._verify(jwt, keys)
        self._remember(token, jwt, keys, status)
        return status

    def _remember(self, token: str, jwt: Jwt, keys: KeySet, status: JwtStatus) -> None:
        if self._cache is None:
            return
        if status is JwtStatus.Ok:
            self._cache.put(token, keys, jwt)
        elif status is JwtStatus.JwtVerificationFail:
            # A key with its kid and alg exists and the signature is wrong: final for this
            # key set. (An unknown kid is not kept: fresh keys may cure it.)
            self._cache.put_rejected(token, keys, jwt, status)

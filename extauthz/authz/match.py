"""Compiled value matchers with Istio's string syntax: exact, `prefix*`, `*suffix`, `*`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from extauthz.config.parse import ConfigError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class StringMatcher:
    """Matches a value against a list of Istio patterns; an absent value never matches.

    `*` alone matches any non-empty value (Istio compiles it to the regex `.+`), so
    `notRequestPrincipals: ["*"]` means "no request principal".
    """

    __slots__ = ("_exact", "_ignore_case", "_is_presence", "_prefixes", "_regexes", "_suffixes")

    def __init__(
        self, patterns: Iterable[str], *, ignore_case: bool = False, templates: bool = False
    ) -> None:
        fold = str.lower if ignore_case else str
        exact: set[str] = set()
        prefixes: list[str] = []
        suffixes: list[str] = []
        regexes: list[re.Pattern[str]] = []
        self._is_presence = False
        for pattern in patterns:
            if pattern == "*":
                self._is_presence = True
            elif templates and "{" in pattern:
                regexes.append(_path_template(pattern))
            elif pattern.startswith("*"):
                suffixes.append(fold(pattern[1:]))
            elif pattern.endswith("*"):
                prefixes.append(fold(pattern[:-1]))
            else:
                exact.add(fold(pattern))
        self._ignore_case = ignore_case
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._suffixes = tuple(suffixes)
        self._regexes = tuple(regexes)

    def matches(self, value: str | None) -> bool:
        if not value:
            return False
        if self._is_presence:
            return True
        if self._ignore_case:
            value = value.lower()
        return (
            value in self._exact
            or (bool(self._prefixes) and value.startswith(self._prefixes))
            or (bool(self._suffixes) and value.endswith(self._suffixes))
            or any(regex.fullmatch(value) for regex in self._regexes)
        )

    def matches_any(self, values: Iterable[str]) -> bool:
        return any(self.matches(value) for value in values)


# Envoy's uri_template: a variable matches RFC 3986 pchars only (unreserved, %-encoded,
# sub-delims, ':' and '@'); `[` and `]`, which Envoy's path normalization leaves as they are,
# end a match.
_PCHAR = r"a-zA-Z0-9\-._~%!$&'()*+,;=:@"
_ONE_SEGMENT = f"[{_PCHAR}]+"  # {*}
_ANY_SEGMENTS = f"[{_PCHAR}/]*"  # {**}: zero or more characters, `/` included


def _path_template(pattern: str) -> re.Pattern[str]:
    """Istio's path templates as Envoy's uri_template matches them: `{*}` is one non-empty
    path segment, `{**}` any run of segments, the empty one included (`/api/{**}` matches
    `/api/`, `/a/{**}/b` matches `/a//b`)."""
    parts = re.split(r"(\{\*\*\}|\{\*\})", pattern)
    regex = "".join(
        _ONE_SEGMENT if part == "{*}" else _ANY_SEGMENTS if part == "{**}" else re.escape(part)
        for part in parts
    )
    if "{" in re.sub(r"\{\*\*?\}", "", pattern):
        raise ConfigError(f"path template {pattern!r}: only {{*}} and {{**}} are supported")
    return re.compile(regex)


class IpMatcher:
    """Matches an address against CIDRs or single addresses (IPv4 and IPv6)."""

    __slots__ = ("_networks",)

    def __init__(self, blocks: Iterable[str]) -> None:
        networks: list[IpNetwork] = []
        for block in blocks:
            try:
                networks.append(ipaddress.ip_network(block, strict=False))
            except ValueError as exc:
                raise ConfigError(f"{block!r} is not an IP address or CIDR block") from exc
        self._networks = tuple(networks)

    def matches(self, value: str | None) -> bool:
        if not value:
            return False
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


class _EnvoyString:
    """One Envoy StringMatcher as istiod writes it for a JWT payload value: `exact` (the
    empty string included), `prefix`, `suffix`, or the regex `.+` (any non-empty value)."""

    __slots__ = ("_kind", "_text")

    def __init__(self, kind: str, text: str = "") -> None:
        self._kind, self._text = kind, text

    def matches(self, value: str) -> bool:
        if self._kind == "exact":
            return value == self._text
        if self._kind == "prefix":
            return value.startswith(self._text)
        if self._kind == "suffix":
            return value.endswith(self._text)
        return bool(value)


_ANY = _EnvoyString("any")


StringMatch = tuple[str, str]  # (kind, text): kind is exact, prefix, suffix or any
_ANY_VALUE: StringMatch = ("any", "")


def request_principal_parts(pattern: str) -> tuple[StringMatch, StringMatch]:
    """istiod's requestPrincipalGenerator: the matches on `iss` and on `sub` one pattern
    becomes. `iss/sub` split at the last `/`, a `*` at either end widening the part it
    touches; a pattern without `/` is all issuer with the subject exactly empty, except `*x`
    (any issuer, a subject ending in x) and `x*` (an issuer starting with x, any subject).
    Read by the matcher below and by the native twin (native/rbac.py)."""
    iss, slash, sub = pattern.rpartition("/")
    if not slash:
        iss, sub = pattern, ""
    if pattern == "*":
        return _ANY_VALUE, _ANY_VALUE
    if pattern.startswith("*"):
        if not slash:
            return _ANY_VALUE, ("suffix", pattern[1:])
        return (_ANY_VALUE if iss == "*" else ("suffix", iss[1:])), ("exact", sub)
    if pattern.endswith("*"):
        if not slash:
            return ("prefix", pattern[:-1]), _ANY_VALUE
        return ("exact", iss), (_ANY_VALUE if sub == "*" else ("prefix", sub[:-1]))
    return ("exact", iss), ("exact", sub)


def _issuer_and_subject(pattern: str) -> tuple[_EnvoyString, _EnvoyString]:
    issuer, subject = request_principal_parts(pattern)
    return _EnvoyString(*issuer), _EnvoyString(*subject)


class RequestPrincipalMatcher:
    """`requestPrincipals` and `request.auth.principal` as istiod generates them: each pattern
    is two matchers, on the payload's `iss` and on its `sub`, both of which must be present
    strings. So `*` needs a non-empty issuer and subject (a token without `sub` is no
    request principal), and `iss/svc/x` means issuer `iss/svc`, subject `x`."""

    __slots__ = ("_pairs",)

    def __init__(self, patterns: Iterable[str]) -> None:
        self._pairs = tuple(_issuer_and_subject(pattern) for pattern in patterns)

    def matches(self, issuer: str | None, subject: str | None) -> bool:
        if issuer is None or subject is None:
            return False
        return any(iss.matches(issuer) and sub.matches(subject) for iss, sub in self._pairs)

"""Where tokens are found: the JWTRule locations, and Envoy's way of reading them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from extauthz.attributes import RequestAttributes
from extauthz.config.resources import JWTRule
from extauthz.records import record


@dataclass(frozen=True, slots=True)
class Location:
    kind: str  # "header" | "param" | "cookie"
    name: str  # header names are lower-case
    prefix: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" (prefix {self.prefix!r})" if self.prefix else "")


# Istio's default when a JWTRule names no location: `Authorization: Bearer <token>` and
# the `access_token` query parameter.
DEFAULT_LOCATIONS = (
    Location("header", "authorization", "Bearer "),
    Location("param", "access_token"),
)


def rule_locations(rule: JWTRule) -> tuple[Location, ...]:
    """A rule's locations in Envoy's reading order (ExtractorImpl): headers, then query
    parameters, then cookies, each kind sorted by its key (header name and prefix, parameter
    name, cookie name: Envoy keeps them in sorted maps), each location once. The order
    decides which token is checked first (the last one found) and whose payload is kept."""
    headers = sorted({(h.name, h.prefix) for h in rule.from_headers}, key=lambda np: np[0] + np[1])
    locations = (
        *(Location("header", name, prefix) for name, prefix in headers),
        *(Location("param", name) for name in sorted(set(rule.from_params))),
        *(Location("cookie", name) for name in sorted(set(rule.from_cookies))),
    )
    return locations or DEFAULT_LOCATIONS


@record
class FoundToken:
    token: str
    location: Location


_JWT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _from_header(value: str, prefix: str) -> str | None:
    """Envoy's reading of one header entry: without a prefix the whole value; with one, from
    the first base64url-or-dot character after its first occurrence (case-sensitive,
    anywhere in the value) to the end, or the whole value when no such character follows;
    no token when the prefix is absent. Measured against Envoy 1.40: characters before the
    token are skipped (`Bearer  *<jwt>` is `<jwt>`), nothing after it is trimmed
    (`Bearer <jwt> trailing` is a malformed token)."""
    if not prefix:
        return value
    position = value.find(prefix)
    if position < 0:
        return None  # no prefix anywhere: this entry carries no token
    for start in range(position + len(prefix), len(value)):
        if value[start] in _JWT_CHARS:
            return value[start:]
    return value


def extract_tokens(attrs: RequestAttributes, locations: Iterable[Location]) -> list[FoundToken]:
    """Every token at the given locations (in Envoy's order, as `rule_locations` makes
    them): one per entry of a header (a header sent twice is two tokens, both checked), the
    first value of a query parameter, the first cookie of a name. A location that is present
    but empty still yields a (malformed) token, as in Envoy."""
    found: list[FoundToken] = []
    for location in locations:
        if location.kind == "header":
            for raw in attrs.header_values(location.name):
                token = _from_header(raw, location.prefix)
                if token is not None:
                    found.append(FoundToken(token, location))
            continue
        if location.kind == "param":
            value = attrs.query_param(location.name)
        else:
            value = attrs.cookie(location.name)
        if value is not None:
            found.append(FoundToken(value, location))
    return found

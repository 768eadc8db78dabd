"""Where tokens are found: the JWTRule locations, and Envoy's way of reading them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from extauthz.attributes import RequestAttributes
from extauthz.config.resources import JWTRule

# After a header's value prefix, Envoy skips to the first base64url-or-dot character and takes
# the run of them (ExtractorImpl::extractJWT); '=' is not among them.
_JWT_RUN = re.compile(r"[A-Za-z0-9\-_.]+")


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
    """A rule's locations in Envoy's reading order: headers, then parameters, then cookies
    (extract_tokens relies on this order, so it is fixed here, once)."""
    locations = (
        *(Location("header", header.name, header.prefix) for header in rule.from_headers),
        *(Location("param", name) for name in rule.from_params),
        *(Location("cookie", name) for name in rule.from_cookies),
    )
    return locations or DEFAULT_LOCATIONS


@dataclass(frozen=True, slots=True)
class FoundToken:
    token: str
    location: Location


def _from_header(value: str, prefix: str) -> str | None:
    """Envoy's reading of one header: without a prefix the whole value; with one, the JWT
    characters after it, or the whole value when none follow (it then fails to parse)."""
    if not prefix:
        return value
    position = value.find(prefix)
    if position < 0:
        return None  # no prefix anywhere: this header carries no token
    found = _JWT_RUN.search(value, position + len(prefix))
    return found.group(0) if found else value


def extract_tokens(attrs: RequestAttributes, locations: Iterable[Location]) -> list[FoundToken]:
    """Every token at the given locations (given in Envoy's order: headers, then query
    parameters, then cookies, as `rule_locations` makes them). A location that is present
    but empty still yields a (malformed) token, as in Envoy."""
    found: list[FoundToken] = []
    for location in locations:
        token: str | None
        if location.kind == "header":
            raw = attrs.headers.get(location.name)
            token = None if raw is None else _from_header(raw, location.prefix)
        elif location.kind == "param":
            token = attrs.query_param(location.name)
        else:
            token = attrs.cookie(location.name)
        if token is not None:
            found.append(FoundToken(token, location))
    return found

"""Where tokens are found: the JWTRule locations, compiled once per provider set."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from extauthz.attributes import RequestAttributes
from extauthz.config.resources import JWTRule

# After a header's value prefix Envoy takes the run of characters a compact JWS can contain.
_JWT_RUN = re.compile(r"[A-Za-z0-9\-_.=]+")


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


def _from_header(value: str, prefix: str) -> str:
    if not prefix:
        return value.strip()
    position = value.find(prefix)
    if position < 0:
        return ""
    found = _JWT_RUN.match(value, position + len(prefix))
    return found.group(0) if found else ""


def extract_tokens(attrs: RequestAttributes, locations: Iterable[Location]) -> list[FoundToken]:
    """Every token present at the given locations, in location order, each token once."""
    found: list[FoundToken] = []
    seen: set[str] = set()
    for location in locations:
        if location.kind == "header":
            raw = attrs.headers.get(location.name)
            token = _from_header(raw, location.prefix) if raw else ""
        elif location.kind == "param":
            token = attrs.query_param(location.name) or "" if attrs.query else ""
        else:
            token = attrs.cookie(location.name) or ""
        if token and token not in seen:
            seen.add(token)
            found.append(FoundToken(token, location))
    return found

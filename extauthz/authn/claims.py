"""The claims authorization matches: a verified payload as Envoy's jwt_authn writes it into
the request's metadata, where Istio's RBAC `request.auth.claims[...]` reads it.

istiod asks every provider (one per JWTRule) to normalize its payloads
(`normalize_payload_in_metadata.space_delimited_claims`): the rule's `spaceDelimitedClaims`
plus "permission" and "scope", always (policy_applier.go, buildSpaceDelimitedClaims).
Envoy then turns each such top-level string claim into the list of its space-separated
words (authenticator.cc, setPayloadMetadata), and RBAC matches a list per element.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

# Split by every provider istiod configures, whatever the rule lists.
DEFAULT_SPACE_DELIMITED_CLAIMS = ("permission", "scope")


def space_delimited_claims(listed: Iterable[str]) -> tuple[str, ...]:
    """What istiod passes to Envoy for a rule: the sorted union of the rule's
    `spaceDelimitedClaims` and the defaults."""
    return tuple(sorted({*listed, *DEFAULT_SPACE_DELIMITED_CLAIMS}))


def split_claim(value: str) -> list[str]:
    """Envoy's absl::StrSplit(value, ' ', SkipEmpty()): on the space character only (a tab
    or a newline stays inside a word), runs of spaces and leading or trailing ones give no
    empty words."""
    return [word for word in value.split(" ") if word]


def normalized_payload(payload: Mapping[str, Any], claims: Iterable[str]) -> Mapping[str, Any]:
    """The payload with each named top-level claim that is a string replaced by its words.

    As Envoy: a name is a top-level key, never a path (`a.b` names the key "a.b"); a claim
    that is not a string (a list, a number, an object) is left as it is; so is a string
    without any word ("" or only spaces), since Envoy only rewrites the claim when it adds
    a word to the list."""
    changes: dict[str, list[str]] = {}
    for claim in claims:
        value = payload.get(claim)
        if isinstance(value, str):
            words = split_claim(value)
            if words:
                changes[claim] = words
    if not changes:
        return payload
    return MappingProxyType({**payload, **changes})

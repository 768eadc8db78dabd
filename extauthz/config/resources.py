"""Frozen copies of the Istio security resources we read: RequestAuthentication and
AuthorizationPolicy (security.istio.io v1 and v1beta1). Field names follow the CRDs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extauthz.authn.keys import KeySet

EMPTY_MAP: Mapping[str, str] = MappingProxyType({})


def yaml_name(field_name: str) -> str:
    """The CRD's camelCase name of a snake_case field here: not_request_principals ->
    notRequestPrincipals."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resource came from, for error messages and decision explanations."""

    file: str
    document: int  # 1-based index of the YAML document in the file

    def __str__(self) -> str:
        return f"{self.file} (document {self.document})"


@dataclass(frozen=True, slots=True)
class Meta:
    name: str
    namespace: str
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAP)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Selector:
    match_labels: Mapping[str, str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items())


@dataclass(frozen=True, slots=True)
class TargetRef:
    kind: str
    name: str
    group: str = ""
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class JwtHeader:
    name: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ClaimToHeader:
    header: str
    claim: str


@dataclass(frozen=True, slots=True)
class JWTRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str = ""
    jwks_uri: str = ""
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout_seconds: float | None = None
    # Claims whose string value Envoy splits on spaces into a list before matching
    # (Istio 1.28). Only what the rule lists: "scope" and "permission" are always split.
    space_delimited_claims: tuple[str, ...] = ()
    # The inline `jwks`, parsed once when read (not part of the resource's identity: the
    # text above is).
    keys: KeySet | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RequestAuthentication:
    meta: Meta
    origin: Origin
    selector: Selector | None = None
    target_refs: tuple[TargetRef, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()
    # "sa" or "ns/sa"; without "ns/" the policy's namespace is meant.
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    trust_domains: tuple[str, ...] = ()
    not_trust_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    sources: tuple[Source, ...] = ()  # `from` in the YAML
    operations: tuple[Operation, ...] = ()  # `to`
    conditions: tuple[Condition, ...] = ()  # `when`


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    meta: Meta
    origin: Origin
    action: str = "ALLOW"
    selector: Selector | None = None
    target_refs: tuple[TargetRef, ...] = ()
    rules: tuple[Rule, ...] = ()
    provider: str = ""

    @property
    def is_dry_run(self) -> bool:
        return self.meta.annotations.get("istio.io/dry-run", "").lower() == "true"


Resource = RequestAuthentication | AuthorizationPolicy


@dataclass(frozen=True, slots=True)
class ConfigSet:
    """Everything one load read, in file order, plus what was skipped and why."""

    request_authentications: tuple[RequestAuthentication, ...] = ()
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    digest: str = ""  # of the files' names and bytes (load_config): equal digests, equal sets

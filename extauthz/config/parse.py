"""Read Istio YAML (files or directories, multi-document) into a ConfigSet.

Every field is checked against the CRD: an unknown field, a wrong type or a value Istio
would reject is a `ConfigError` naming the file, the document, the resource and the field,
because a silently ignored field could widen access.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from extauthz.authn.keys import JwksError, KeySet, parse_jwks
from extauthz.config.documents import Budget, ConfigError, config_files, read_documents, read_file
from extauthz.config.limits import ConfigLimits
from extauthz.config.resources import (
    AuthorizationPolicy,
    ClaimToHeader,
    Condition,
    ConfigSet,
    JwtHeader,
    JWTRule,
    Meta,
    Operation,
    Origin,
    RequestAuthentication,
    Rule,
    Selector,
    Source,
    TargetRef,
    yaml_name,
)

__all__ = ["ConfigError", "config_files", "load_config", "parse_documents"]

API_GROUP = "security.istio.io"
API_VERSIONS = frozenset({"security.istio.io/v1", "security.istio.io/v1beta1"})
# Kinds of Istio's security group that extauthz knows and does not enforce: skipped with a
# warning. Any other kind in the group is an error (a typo must not drop a policy).
_OTHER_SECURITY_KINDS = frozenset({"PeerAuthentication"})
ACTIONS = frozenset({"ALLOW", "DENY", "AUDIT", "CUSTOM"})
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|s|m))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|s|m)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_HTTP_URL = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$")

T = TypeVar("T")


class _Where:
    """The place being parsed: file, document, resource, and a field path."""

    def __init__(self, origin: Origin, resource: str, path: str = "") -> None:
        self.origin = origin
        self.resource = resource
        self.path = path

    def at(self, key: str | int) -> _Where:
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else key)
        return _Where(self.origin, self.resource, self.path + step)

    def error(self, message: str) -> ConfigError:
        field = f" field {self.path}:" if self.path else ""
        return ConfigError(
            f"{self.origin}: {self.resource}:{field} {message}", self.origin, self.path
        )


def _mapping(value: Any, where: _Where, allowed: Iterable[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(f"must be a mapping, not {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise where.at(str(unknown[0])).error("unknown field (not in the Istio CRD)")
    return value


def _string(value: Any, where: _Where, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise where.error("is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise where.error(f"must be a string, not {type(value).__name__}")
    text = str(value)
    if required and not text:
        raise where.error("must not be empty")
    return text


def _strings(value: Any, where: _Where) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error("must be a list of strings")
    items = tuple(_string(item, where.at(index)) for index, item in enumerate(value))
    for index, item in enumerate(items):
        if not item:
            raise where.at(index).error("must not be empty")
    return items


def _list(value: Any, where: _Where, parse: Callable[[Any, _Where], T]) -> tuple[T, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error("must be a list")
    return tuple(parse(item, where.at(index)) for index, item in enumerate(value))


def _duration(value: Any, where: _Where) -> float | None:
    if value is None:
        return None
    text = _string(value, where)
    if not _DURATION.match(text):
        raise where.error(f"{text!r} is not a duration such as 5s or 1m30s")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _selector(value: Any, where: _Where) -> Selector | None:
    if value is None:
        return None
    spec = _mapping(value, where, {"matchLabels"})
    labels = _mapping(
        spec.get("matchLabels"), where.at("matchLabels"), spec.get("matchLabels") or {}
    )
    return Selector(
        MappingProxyType(
            {str(k): _string(v, where.at("matchLabels").at(str(k))) for k, v in labels.items()}
        )
    )


def _target_ref(value: Any, where: _Where) -> TargetRef:
    spec = _mapping(value, where, {"group", "kind", "name", "namespace"})
    return TargetRef(
        kind=_string(spec.get("kind"), where.at("kind"), required=True),
        name=_string(spec.get("name"), where.at("name"), required=True),
        group=_string(spec.get("group"), where.at("group")),
        namespace=_string(spec.get("namespace"), where.at("namespace")),
    )


def _target_refs(spec: Mapping[str, Any], where: _Where) -> tuple[TargetRef, ...]:
    refs = _list(spec.get("targetRefs"), where.at("targetRefs"), _target_ref)
    if spec.get("targetRef") is not None:
        refs = (_target_ref(spec["targetRef"], where.at("targetRef")), *refs)
    if refs and spec.get("selector") is not None:
        raise where.error("selector and targetRef(s) are mutually exclusive")
    return refs


def _jwt_header(value: Any, where: _Where) -> JwtHeader:
    spec = _mapping(value, where, {"name", "prefix"})
    return JwtHeader(
        name=_string(spec.get("name"), where.at("name"), required=True).lower(),
        prefix=_string(spec.get("prefix"), where.at("prefix")),
    )


def _claim_to_header(value: Any, where: _Where) -> ClaimToHeader:
    spec = _mapping(value, where, {"header", "claim"})
    return ClaimToHeader(
        header=_header_name(spec.get("header"), where.at("header"), required=True),
        claim=_string(spec.get("claim"), where.at("claim"), required=True),
    )


_JWT_RULE_FIELDS = {
    "issuer", "audiences", "jwks", "jwksUri", "jwks_uri", "fromHeaders", "fromParams",
    "fromCookies", "outputPayloadToHeader", "forwardOriginalToken", "outputClaimToHeaders",
    "timeout", "spaceDelimitedClaims",
}  # fmt: skip
# The CRD's maxItems of spaceDelimitedClaims.
_MAX_SPACE_DELIMITED_CLAIMS = 64


def _header_name(value: Any, where: _Where, *, required: bool = False) -> str:
    name = _string(value, where, required=required)
    # Istio's ValidateStrictHTTPHeaderName: an RFC 7230 token.
    if name and not _HEADER_NAME.match(name):
        raise where.error(f"{name!r} is not a valid HTTP header name")
    return name.lower()


def _jwt_rule(value: Any, where: _Where) -> JWTRule:
    spec = _mapping(value, where, _JWT_RULE_FIELDS)
    issuer = _string(spec.get("issuer"), where.at("issuer"))
    jwks_uri = _string(spec.get("jwksUri", spec.get("jwks_uri")), where.at("jwksUri"))
    if not issuer and not jwks_uri:
        raise where.at("issuer").error("issuer or jwksUri must be non-empty string")
    if jwks_uri and not _HTTP_URL.match(jwks_uri):
        raise where.at("jwksUri").error(f"{jwks_uri!r} is not an http(s) URL")
    jwks = _string(spec.get("jwks"), where.at("jwks"))
    forward = spec.get("forwardOriginalToken", False)
    if not isinstance(forward, bool):
        raise where.at("forwardOriginalToken").error("must be true or false")
    timeout = _duration(spec.get("timeout"), where.at("timeout"))
    if timeout is not None and timeout < 0.001:
        raise where.at("timeout").error("must be at least 1ms")
    # Names of top-level claims (Envoy never reads them as paths); each at least 1 character.
    space_delimited = _strings(spec.get("spaceDelimitedClaims"), where.at("spaceDelimitedClaims"))
    if len(space_delimited) > _MAX_SPACE_DELIMITED_CLAIMS:
        raise where.at("spaceDelimitedClaims").error(
            f"may not have more than {_MAX_SPACE_DELIMITED_CLAIMS} items"
        )
    return JWTRule(
        issuer=issuer,
        audiences=_strings(spec.get("audiences"), where.at("audiences")),
        jwks=jwks,
        jwks_uri=jwks_uri,
        from_headers=_list(spec.get("fromHeaders"), where.at("fromHeaders"), _jwt_header),
        from_params=_strings(spec.get("fromParams"), where.at("fromParams")),
        from_cookies=_strings(spec.get("fromCookies"), where.at("fromCookies")),
        output_payload_to_header=_header_name(
            spec.get("outputPayloadToHeader"), where.at("outputPayloadToHeader")
        ),
        forward_original_token=forward,
        output_claim_to_headers=_list(
            spec.get("outputClaimToHeaders"), where.at("outputClaimToHeaders"), _claim_to_header
        ),
        timeout_seconds=timeout,
        space_delimited_claims=space_delimited,
    )


def _fields_of(cls: type, value: Any, where: _Where) -> dict[str, tuple[str, ...]]:
    """Map camelCase YAML list-of-string fields onto a dataclass's snake_case fields."""
    names = {yaml_name(name): name for name in cls.__dataclass_fields__}  # type: ignore[attr-defined]
    spec = _mapping(value, where, names)
    return {names[key]: _strings(item, where.at(key)) for key, item in spec.items()}


# The CRD's maxItems and item maxLength for (not)serviceAccounts, as istiod's
# security.CheckServiceAccount also checks them.
_MAX_SERVICE_ACCOUNTS = 16
_MAX_SERVICE_ACCOUNT_LENGTH = 320


def _service_accounts(values: tuple[str, ...], where: _Where) -> None:
    """istiod's CheckServiceAccount: `sa` or `ns/sa`, no wildcard, both parts non-empty."""
    if len(values) > _MAX_SERVICE_ACCOUNTS:
        raise where.error(f"may not have more than {_MAX_SERVICE_ACCOUNTS} values")
    for index, value in enumerate(values):
        if "*" in value:
            raise where.at(index).error(f"{value!r}: wildcard not allowed")
        ns, slash, sa = value.partition("/")
        if slash and (not ns or not sa or "/" in sa):
            raise where.at(index).error(
                f"{value!r}: expected format 'serviceAccount' or 'namespace/serviceAccount'"
            )
        if len(value) > _MAX_SERVICE_ACCOUNT_LENGTH:
            raise where.at(index).error(
                f"value cannot exceed {_MAX_SERVICE_ACCOUNT_LENGTH} characters"
            )


def _trust_domains(values: tuple[str, ...], where: _Where) -> None:
    """istiod's CheckTrustDomainValues: exact, prefix (`td-*`), suffix (`*-td`) or presence
    (`*`), and never a `/`."""
    for index, value in enumerate(values):
        if value.count("*") > 1:
            raise where.at(index).error(f"{value!r}: at most one wildcard is allowed")
        if "*" in value and not (value.startswith("*") or value.endswith("*")):
            raise where.at(index).error(f"{value!r}: wildcard is only allowed at the start or end")
        if "/" in value:
            raise where.at(index).error(f"{value!r}: trust domain must not contain '/'")


def _source(value: Any, where: _Where) -> Source:
    spec = _mapping(value, where, {"source"})
    where = where.at("source")
    source = Source(**_fields_of(Source, spec.get("source"), where))
    for name in ("service_accounts", "not_service_accounts"):
        _service_accounts(getattr(source, name), where.at(yaml_name(name)))
    for name in ("trust_domains", "not_trust_domains"):
        _trust_domains(getattr(source, name), where.at(yaml_name(name)))
    # The CRD's rule (and istiod's webhook): a service account names the peer's namespace
    # already, so the two would only contradict each other.
    has_service_accounts = source.service_accounts or source.not_service_accounts
    if has_service_accounts and (
        source.principals or source.not_principals or source.namespaces or source.not_namespaces
    ):
        raise where.error("cannot set serviceAccounts with namespaces or principals")
    return source


def _operation(value: Any, where: _Where) -> Operation:
    spec = _mapping(value, where, {"operation"})
    return Operation(**_fields_of(Operation, spec.get("operation"), where.at("operation")))


def _condition(value: Any, where: _Where) -> Condition:
    spec = _mapping(value, where, {"key", "values", "notValues"})
    condition = Condition(
        key=_string(spec.get("key"), where.at("key"), required=True),
        values=_strings(spec.get("values"), where.at("values")),
        not_values=_strings(spec.get("notValues"), where.at("notValues")),
    )
    if not condition.values and not condition.not_values:
        raise where.error("a condition needs values or notValues")
    return condition


def _rule(value: Any, where: _Where) -> Rule:
    spec = _mapping(value, where, {"from", "to", "when"})
    return Rule(
        sources=_list(spec.get("from"), where.at("from"), _source),
        operations=_list(spec.get("to"), where.at("to"), _operation),
        conditions=_list(spec.get("when"), where.at("when"), _condition),
    )


def _meta(document: Mapping[str, Any], where: _Where, default_namespace: str) -> Meta:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise where.error("metadata is required")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise where.at("metadata").at("annotations").error("must be a mapping")
    return Meta(
        name=_string(metadata.get("name"), where.at("metadata").at("name"), required=True),
        namespace=_string(metadata.get("namespace"), where) or default_namespace,
        annotations=MappingProxyType({str(k): str(v) for k, v in annotations.items()}),
    )


def _inline_keys(jwks: str, where: _Where, limits: ConfigLimits, warnings: list[str]) -> KeySet:
    """An inline `jwks`, parsed once here (compiling uses these keys). Keys that can never
    verify are skipped, as jwt_verify_lib skips them, and said; weak keys are warnings, or
    errors with --strict-keys."""
    try:
        keys = parse_jwks(jwks, limits.max_jwks_keys)
    except JwksError as exc:
        raise where.error(str(exc)) from exc
    for reason in keys.skipped:
        warnings.append(f"{where.error(f'a key is not used: {reason}')}")
    for weakness in keys.weak_keys:
        if limits.strict_keys:
            raise where.error(f"{weakness} (refused with --strict-keys)")
        warnings.append(f"{where.error(f'weak key: {weakness}')}")
    return keys


def _request_authentication(
    doc: Mapping[str, Any], origin: Origin, ns: str, limits: ConfigLimits, warnings: list[str]
) -> RequestAuthentication:
    where = _Where(origin, "RequestAuthentication")
    meta = _meta(doc, where, ns)
    where = _Where(origin, f"RequestAuthentication {meta.ref}", "spec")
    spec = _mapping(doc.get("spec"), where, {"selector", "targetRef", "targetRefs", "jwtRules"})
    rules = _list(spec.get("jwtRules"), where.at("jwtRules"), _jwt_rule)
    rules = tuple(
        replace(rule, keys=_inline_keys(rule.jwks, rules_at.at(i).at("jwks"), limits, warnings))
        if rule.jwks
        else rule
        for rules_at in (where.at("jwtRules"),)
        for i, rule in enumerate(rules)
    )
    return RequestAuthentication(
        meta=meta,
        origin=origin,
        selector=_selector(spec.get("selector"), where.at("selector")),
        target_refs=_target_refs(spec, where),
        jwt_rules=rules,
    )


def _authorization_policy(
    doc: Mapping[str, Any], origin: Origin, ns: str, limits: ConfigLimits, warnings: list[str]
) -> AuthorizationPolicy:
    where = _Where(origin, "AuthorizationPolicy")
    meta = _meta(doc, where, ns)
    where = _Where(origin, f"AuthorizationPolicy {meta.ref}", "spec")
    spec = _mapping(
        doc.get("spec"),
        where,
        {"selector", "targetRef", "targetRefs", "rules", "action", "provider"},
    )
    action = _string(spec.get("action"), where.at("action")) or "ALLOW"
    if action not in ACTIONS:
        raise where.at("action").error(f"{action!r} is not one of {', '.join(sorted(ACTIONS))}")
    provider_spec = _mapping(spec.get("provider"), where.at("provider"), {"name"})
    provider = _string(provider_spec.get("name"), where.at("provider").at("name"))
    if action == "CUSTOM" and not provider:
        raise where.at("provider").error("a CUSTOM policy needs provider.name")
    if action != "CUSTOM" and provider:
        raise where.at("provider").error("provider is only allowed with action CUSTOM")
    return AuthorizationPolicy(
        meta=meta,
        origin=origin,
        action=action,
        selector=_selector(spec.get("selector"), where.at("selector")),
        target_refs=_target_refs(spec, where),
        rules=_list(spec.get("rules"), where.at("rules"), _rule),
        provider=provider,
    )


_PARSERS = {
    "RequestAuthentication": _request_authentication,
    "AuthorizationPolicy": _authorization_policy,
}


def _near(word: str, known: Iterable[str]) -> str | None:
    """The known word `word` is a near miss of (a typo or a wrong case), if any."""
    folded = {k.lower(): k for k in known}
    if word.lower() in folded:
        return folded[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.8)
    return folded[close[0]] if close else None


def _parser_for(document: Mapping[str, Any], origin: Origin) -> Callable[..., Any] | str:
    """The parser for a document, or why it is skipped (a warning). A document that looks
    meant for extauthz but is not quite right is an error: skipping it could drop a policy
    and so widen access."""
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if not isinstance(kind, str) or not kind or not isinstance(api_version, str):
        raise ConfigError(f"{origin}: a document needs a string apiVersion and kind")
    group = api_version.rpartition("/")[0]
    parser = _PARSERS.get(kind)
    if parser is not None and api_version in API_VERSIONS:
        return parser
    if group == API_GROUP or _near(group, [API_GROUP]):
        if group != API_GROUP:
            raise ConfigError(f"{origin}: apiVersion {api_version!r}: did you mean {API_GROUP}?")
        if parser is not None:
            raise ConfigError(
                f"{origin}: {kind} {api_version!r} is not a version extauthz reads "
                f"({', '.join(sorted(API_VERSIONS))})"
            )
        if kind in _OTHER_SECURITY_KINDS and api_version in API_VERSIONS:
            return f"{origin}: skipped {api_version}/{kind}: not a resource extauthz enforces"
        known = _near(kind, _PARSERS)
        hint = f": did you mean {known}?" if known else ""
        raise ConfigError(f"{origin}: unknown kind {kind!r} in {API_GROUP}{hint}")
    known = _near(kind, _PARSERS)
    if known is not None or kind.endswith("List"):
        hint = f" (did you mean {known}?)" if known and known != kind else ""
        what = f"kind {kind!r}{hint}"
        raise ConfigError(
            f"{origin}: {what} with apiVersion {api_version!r}: extauthz reads "
            f"{', '.join(_PARSERS)} of {', '.join(sorted(API_VERSIONS))}, one per document"
        )
    return f"{origin}: skipped {api_version}/{kind}: not a resource extauthz reads"


def _resources(
    documents: list[tuple[int, Any]],
    file: str,
    default_namespace: str,
    limits: ConfigLimits,
    into: tuple[list[RequestAuthentication], list[AuthorizationPolicy], list[str]],
) -> None:
    authns, policies, warnings = into
    for index, document in documents:
        origin = Origin(file, index)
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigError(f"{origin}: a document must be a mapping with apiVersion and kind")
        parser = _parser_for(document, origin)
        if isinstance(parser, str):
            warnings.append(parser)
            continue
        resource = parser(document, origin, default_namespace, limits, warnings)
        (authns if isinstance(resource, RequestAuthentication) else policies).append(resource)


def parse_documents(
    text: str,
    file: str,
    default_namespace: str = "default",
    limits: ConfigLimits | None = None,
) -> ConfigSet:
    """Parse one YAML stream; a resource without metadata.namespace gets `default_namespace`.
    (Text, not a file: an empty text is no error here; `load_config` refuses empty files.)"""
    limits = limits or ConfigLimits()
    found: tuple[list[RequestAuthentication], list[AuthorizationPolicy], list[str]] = ([], [], [])
    documents = read_documents(text, file, Budget.starting_now(limits))
    _resources(documents, file, default_namespace, limits, found)
    return ConfigSet(tuple(found[0]), tuple(found[1]), tuple(found[2]))


def load_config(
    paths: Iterable[str | Path],
    default_namespace: str = "default",
    limits: ConfigLimits | None = None,
) -> ConfigSet:
    """Read and parse every file; any error anywhere rejects the whole set. So does a file
    without any YAML document, and (unless limits.allow_empty) a set without any resource:
    files that lost their content must never read as "no policy"."""
    limits = limits or ConfigLimits()
    budget = Budget.starting_now(limits)
    found: tuple[list[RequestAuthentication], list[AuthorizationPolicy], list[str]] = ([], [], [])
    for file in config_files(paths, allow_empty=limits.allow_empty):
        documents = read_documents(read_file(file, budget), str(file), budget)
        if all(document is None for _, document in documents):
            raise ConfigError(
                f"{file}: no YAML document (only comments, `---` or nothing); an empty file "
                "is a mistake, not an empty configuration: remove the file to remove its "
                "resources"
            )
        _resources(documents, str(file), default_namespace, limits, found)
    config = ConfigSet(tuple(found[0]), tuple(found[1]), tuple(found[2]), budget.digest.hexdigest())
    is_empty = not config.request_authentications and not config.authorization_policies
    if is_empty and not limits.allow_empty:
        raise ConfigError(
            "the configuration holds no RequestAuthentication and no AuthorizationPolicy, so "
            "it would allow every request; start with --allow-empty-config to serve so"
        )
    return config

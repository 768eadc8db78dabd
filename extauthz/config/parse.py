"""Read Istio YAML (files or directories, multi-document) into a ConfigSet.

Every field is checked against the CRD: an unknown field, a wrong type or a value Istio
would reject is a `ConfigError` naming the file, the document, the resource and the field,
because a silently ignored field could widen access.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from extauthz.authn.keys import JwksError, parse_jwks
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
)

API_VERSIONS = frozenset({"security.istio.io/v1", "security.istio.io/v1beta1"})
ACTIONS = frozenset({"ALLOW", "DENY", "AUDIT", "CUSTOM"})
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|s|m))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|s|m)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_HTTP_URL = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$")

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration the service refuses to load; str() is one line for humans. Where it
    is known, the place: file, 1-based YAML document and field path (for `locate`)."""

    def __init__(self, message: str, origin: Origin | None = None, field_path: str = "") -> None:
        super().__init__(message)
        self.origin = origin
        self.field_path = field_path


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
    "timeout",
}  # fmt: skip


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
    if jwks:
        try:
            parse_jwks(jwks)
        except JwksError as exc:
            raise where.at("jwks").error(str(exc)) from exc
    forward = spec.get("forwardOriginalToken", False)
    if not isinstance(forward, bool):
        raise where.at("forwardOriginalToken").error("must be true or false")
    timeout = _duration(spec.get("timeout"), where.at("timeout"))
    if timeout is not None and timeout < 0.001:
        raise where.at("timeout").error("must be at least 1ms")
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
    )


def _fields_of(cls: type, value: Any, where: _Where) -> dict[str, tuple[str, ...]]:
    """Map camelCase YAML list-of-string fields onto a dataclass's snake_case fields."""
    names = {_camel(name): name for name in cls.__dataclass_fields__}  # type: ignore[attr-defined]
    spec = _mapping(value, where, names)
    return {names[key]: _strings(item, where.at(key)) for key, item in spec.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _source(value: Any, where: _Where) -> Source:
    spec = _mapping(value, where, {"source"})
    return Source(**_fields_of(Source, spec.get("source"), where.at("source")))


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


def _request_authentication(
    doc: Mapping[str, Any], origin: Origin, ns: str
) -> RequestAuthentication:
    where = _Where(origin, "RequestAuthentication")
    meta = _meta(doc, where, ns)
    where = _Where(origin, f"RequestAuthentication {meta.ref}", "spec")
    spec = _mapping(doc.get("spec"), where, {"selector", "targetRef", "targetRefs", "jwtRules"})
    return RequestAuthentication(
        meta=meta,
        origin=origin,
        selector=_selector(spec.get("selector"), where.at("selector")),
        target_refs=_target_refs(spec, where),
        jwt_rules=_list(spec.get("jwtRules"), where.at("jwtRules"), _jwt_rule),
    )


def _authorization_policy(doc: Mapping[str, Any], origin: Origin, ns: str) -> AuthorizationPolicy:
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


def parse_documents(text: str, file: str, default_namespace: str = "default") -> ConfigSet:
    """Parse one YAML stream; a resource without metadata.namespace gets `default_namespace`."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}".replace("\n", " ")) from exc
    authns: list[RequestAuthentication] = []
    policies: list[AuthorizationPolicy] = []
    warnings: list[str] = []
    for index, document in enumerate(documents, start=1):
        origin = Origin(file, index)
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigError(f"{origin}: a document must be a mapping with apiVersion and kind")
        kind, api_version = document.get("kind"), document.get("apiVersion")
        parser = _PARSERS.get(kind) if isinstance(kind, str) else None
        if parser is None or api_version not in API_VERSIONS:
            warnings.append(
                f"{origin}: skipped {api_version}/{kind}: not a resource extauthz reads"
            )
            continue
        resource = parser(document, origin, default_namespace)
        (authns if isinstance(resource, RequestAuthentication) else policies).append(resource)  # type: ignore[arg-type]
    return ConfigSet(tuple(authns), tuple(policies), tuple(warnings))


def config_files(paths: Iterable[str | Path]) -> list[Path]:
    """The YAML files named by `paths`: files as given, directories' *.yaml/*.yml, sorted.

    Hidden entries are skipped, so a Kubernetes ConfigMap mount (whose real files live in
    `..data/`, reached through symlinks) is read once.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    entry
                    for entry in path.iterdir()
                    if entry.suffix in (".yaml", ".yml")
                    and not entry.name.startswith(".")
                    and entry.is_file()
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or directory")
    return files


def load_config(paths: Iterable[str | Path], default_namespace: str = "default") -> ConfigSet:
    """Read and parse every file; any error anywhere rejects the whole set."""
    authns: list[RequestAuthentication] = []
    policies: list[AuthorizationPolicy] = []
    warnings: list[str] = []
    for file in config_files(paths):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from exc
        part = parse_documents(text, str(file), default_namespace)
        authns.extend(part.request_authentications)
        policies.extend(part.authorization_policies)
        warnings.extend(part.warnings)
    return ConfigSet(tuple(authns), tuple(policies), tuple(warnings))

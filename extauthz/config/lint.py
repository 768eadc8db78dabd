"""What `extauthz validate` adds to loading: the line of an error, and warnings for things
that are legal but surprising."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from extauthz.config.parse import ConfigError
from extauthz.config.resources import ConfigSet

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def locate(error: ConfigError) -> int | None:
    """The 1-based line of the field an error names, or of its document; None if unknown."""
    if error.origin is None:
        return None
    try:
        text = Path(error.origin.file).read_text(encoding="utf-8")
        # The file passed the bounded read (the error is about a resource), so composing it
        # again costs what reading it did.
        documents = list(
            yaml.compose_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        )
        node = documents[error.origin.document - 1]
    except (OSError, yaml.YAMLError, IndexError, UnicodeDecodeError):
        return None
    line = node.start_mark.line + 1
    for key, index in _STEP.findall(error.field_path):
        if isinstance(node, yaml.MappingNode) and key:
            found = [(k, v) for k, v in node.value if k.value == key]
            if not found:
                break
            key_node, node = found[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def warnings(config: ConfigSet) -> list[str]:
    found = list(config.warnings)
    deny_all_namespaces = set()
    for policy in config.authorization_policies:
        where = f"{policy.origin}: AuthorizationPolicy {policy.meta.ref}"
        if policy.action == "CUSTOM":
            found.append(
                f"{where}: action CUSTOM delegates to another authorizer ({policy.provider}); "
                "extauthz loads it but does not enforce it"
            )
        elif policy.action in ("DENY", "AUDIT") and not policy.rules:
            found.append(f"{where}: {policy.action} without rules matches nothing "
                         "(to match every request write `rules: [{}]`)")  # fmt: skip
        elif policy.action == "ALLOW" and not policy.rules:
            found.append(f"{where}: ALLOW without rules denies every request of the "
                         "workloads it selects")  # fmt: skip
        if (
            policy.action == "DENY"
            and not policy.is_dry_run
            and any(not (r.sources or r.operations or r.conditions) for r in policy.rules)
        ):
            deny_all_namespaces.add(policy.meta.namespace)
        if policy.target_refs and not any(ref.kind == "Gateway" for ref in policy.target_refs):
            kinds = ", ".join(sorted({ref.kind for ref in policy.target_refs}))
            found.append(f"{where}: targetRef kind {kinds}: extauthz binds targetRefs to "
                         "Gateway pods only, so this policy selects nothing here")  # fmt: skip
    for policy in config.authorization_policies:
        if policy.action == "ALLOW" and policy.meta.namespace in deny_all_namespaces:
            found.append(
                f"{policy.origin}: AuthorizationPolicy {policy.meta.ref}: unreachable ALLOW: "
                "a DENY policy in the same namespace denies every request"
            )
    for authn in config.request_authentications:
        where = f"{authn.origin}: RequestAuthentication {authn.meta.ref}"
        for index, rule in enumerate(authn.jwt_rules):
            if rule.jwks_uri.startswith("http://"):
                found.append(f"{where}: jwtRules[{index}].jwksUri is plain http: the keys "
                             "that decide who gets in travel unprotected")  # fmt: skip
            if not rule.jwks and not rule.jwks_uri:
                found.append(f"{where}: jwtRules[{index}] names no keys: they are found by "
                             f"OIDC discovery at {rule.issuer.rstrip('/')}"
                             "/.well-known/openid-configuration")  # fmt: skip
        if authn.target_refs and not any(ref.kind == "Gateway" for ref in authn.target_refs):
            found.append(f"{where}: targetRef is not a Gateway: selects nothing here")
    return found

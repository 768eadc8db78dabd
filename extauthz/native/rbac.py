"""AuthorizationPolicies → the Envoy RBAC http filters istiod writes for a standard Envoy.

istiod's pieces (pilot/pkg/security/authz): `builder` (filters per action, dry-run as shadow
rules, policy names), `model` (a rule's from/to/when as and/or/not trees, one generator per
field) and `matcher` (Istio's `exact`, `prefix*`, `*suffix`, `*` as Envoy matchers). Request
principals, audiences, presenters and claims are read from the jwt_authn filter's metadata
under `payload` (its `payload_in_metadata`), as istiod does for a standard Envoy.

Output is Envoy's v3 JSON with snake_case names, default values left out as protojson does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from extauthz.authz.match import StringMatch, request_principal_parts
from extauthz.config.resources import AuthorizationPolicy, Condition, Operation, Rule, Source

Json = dict[str, Any]
T = TypeVar("T")

RBAC_FILTER = "envoy.filters.http.rbac"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
URI_TEMPLATE_TYPE = (
    "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
)
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"  # the jwt_authn filter's payload_in_metadata
DEFAULT_TRUST_DOMAIN = "cluster.local"
DRY_RUN_ALLOW_PREFIX = "istio_dry_run_allow_"
DRY_RUN_DENY_PREFIX = "istio_dry_run_deny_"
# istiod's filter order: AUDIT (RBAC action LOG), then DENY, then ALLOW.
ACTION_ORDER = (("AUDIT", "LOG"), ("DENY", "DENY"), ("ALLOW", "ALLOW"))
# builder.go rbacPolicyMatchNever: a policy without rules matches nothing.
MATCH_NEVER: Json = {
    "permissions": [{"not_rule": {"any": True}}],
    "principals": [{"not_id": {"any": True}}],
}
_ANY_VALUE = ".+"  # istiod writes `*` as this regex: present and non-empty
_GO_META = frozenset("\\.+*?()|[]{}^$")  # what Go's regexp.QuoteMeta escapes
_PATH_TEMPLATE = re.compile(r"\{\*\*\}|\{\*\}")


class InvalidValue(ValueError):
    """A value istiod cannot generate a matcher for (its generator returns an error)."""


# --- matchers (istio matcher/*.go) -----------------------------------------------------


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta, so regexes read exactly as istiod writes them."""
    return "".join("\\" + c if c in _GO_META else c for c in text)


def regex_matcher(regex: str) -> Json:
    return {"safe_regex": {"regex": regex}}


def _string(kind: str, value: str, *, ignore_case: bool = False) -> Json:
    return {kind: value, "ignore_case": True} if ignore_case else {kind: value}


def string_matcher(value: str, prefix: str = "") -> Json:
    """matcher.StringMatcherWithPrefix: `*` alone is `.+` (and drops `prefix`); `*x` is a
    suffix (a regex when there is a prefix); `x*` a prefix; anything else exact."""
    if value == "*":
        return regex_matcher(_ANY_VALUE)
    if value.startswith("*"):
        if not prefix:
            return _string("suffix", value[1:])
        return regex_matcher(prefix + ".*" + quote_meta(value[1:]))
    if value.endswith("*"):
        return _string("prefix", prefix + value[:-1])
    return _string("exact", prefix + value)


def header_matcher(name: str, value: str, *, ignore_case: bool = False) -> Json:
    """matcher.HeaderMatcher (HostMatcher with ignore_case): `*` is presence."""
    if value == "*":
        return {"name": name, "present_match": True}
    if value.startswith("*"):
        match = _string("suffix", value[1:], ignore_case=ignore_case)
    elif value.endswith("*"):
        match = _string("prefix", value[:-1], ignore_case=ignore_case)
    else:
        match = _string("exact", value, ignore_case=ignore_case)
    return {"name": name, "string_match": match}


def or_value(matchers: Sequence[Json]) -> Json:
    """matcher.OrMatcher: one matcher stands alone."""
    return matchers[0] if len(matchers) == 1 else {"or_match": {"value_matchers": list(matchers)}}


def string_or_value(values: Sequence[str]) -> Json:
    return or_value([{"string_match": string_matcher(v)} for v in values])


def metadata_matcher(filter_name: str, keys: Sequence[str], value: Json) -> Json:
    return {"filter": filter_name, "path": [{"key": k} for k in keys], "value": value}


def jwt_claim_matcher(claims: Sequence[str], value: Json) -> Json:
    """A claim that may be a string or a list (MetadataListValueMatcher, useExtendedJwt)."""
    either = {"or_match": {"value_matchers": [{"list_match": {"one_of": value}}, value]}}
    return metadata_matcher(JWT_FILTER, [JWT_PAYLOAD, *claims], either)


def cidr_range(text: str) -> Json:
    """util.AddrStrToCidrRange (Go's netip): the address is kept as written, not masked."""
    address, slash, bits = text.partition("/")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise InvalidValue(f"{text!r} is not an IP address or CIDR block") from exc
    width: int = ip.max_prefixlen
    if slash:
        # netip.ParsePrefix: no zone, decimal bits without sign or leading zero.
        if "%" in address or not re.fullmatch(r"0|[1-9][0-9]{0,2}", bits) or int(bits) > width:
            raise InvalidValue(f"{text!r} is not an IP address or CIDR block")
        width = int(bits)
    return {"address_prefix": _go_address(ip), "prefix_len": width}


def _go_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"::ffff:{ip.ipv4_mapped}"
        return ip.compressed.split("%", 1)[0]
    return str(ip)


def port_number(text: str) -> int:
    """util.convertToPort: decimal digits, at most 65535 (0 included)."""
    if not re.fullmatch(r"[0-9]+", text) or int(text) > 65535:
        raise InvalidValue(f"invalid port {text!r}")
    return int(text)


# --- trust domains (istio trustdomain.Bundle) -------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustDomains:
    """The mesh trust domain first, then its aliases (meshConfig trustDomain/Aliases)."""

    domains: tuple[str, ...] = (DEFAULT_TRUST_DOMAIN,)

    def replace_aliases(self, principals: Sequence[str]) -> tuple[str, ...]:
        """Bundle.ReplaceTrustDomainAliases: a `td/ns/x/sa/y` principal whose trust domain is
        the mesh's, an alias, matches one by wildcard, or is cluster.local, is written once
        per trust domain (keeping it as is where its `*td` suffix-matches that domain)."""
        out: list[str] = []
        for principal in principals:
            parts = principal.split("/")
            domain = parts[0]
            if len(parts) != 5 or domain == "*":
                out.append(principal)
            elif _td_match(domain, self.domains) or domain == DEFAULT_TRUST_DOMAIN:
                written: list[str] = []
                for td in self.domains:
                    new = principal if _suffix_match(td, domain) else "/".join([td, *parts[1:]])
                    if new not in written:
                        written.append(new)
                out.extend(written)
            else:
                out.append(principal)
        return tuple(out)

    def expand_aliases(self, values: Sequence[str]) -> tuple[str, ...]:
        """Bundle.ExpandTrustDomainAliases: a known trust domain stands for all of them;
        duplicates dropped."""
        expanded = [d for v in values for d in (self.domains if v in self.domains else (v,))]
        return tuple(dict.fromkeys(expanded))


def _td_match(domain: str, domains: Sequence[str]) -> bool:
    return any(
        domain == d
        or d == "*"
        or _prefix_match(domain, d)
        or _prefix_match(d, domain)
        or _suffix_match(domain, d)
        or _suffix_match(d, domain)
        for d in domains
    )


def _prefix_match(text: str, pattern: str) -> bool:
    return pattern.endswith("*") and text.startswith(pattern[:-1])


def _suffix_match(text: str, pattern: str) -> bool:
    return pattern.startswith("*") and text.endswith(pattern[1:])


# --- generators (istio model/generator.go): one per field or `when` key ------------------

ValueGen = Callable[[str], Json]  # one matcher per value; a field's values are OR'd
ListGen = Callable[[Sequence[str]], Json]  # one matcher for all values (istiod "extended")


@dataclass(frozen=True, slots=True)
class Tree:
    """The and/or/not vocabulary of one side of an RBAC policy."""

    all_of: str
    any_of: str
    items: str
    negate: str

    def all(self, nodes: Sequence[Json]) -> Json:
        return {self.all_of: {self.items: list(nodes)}}

    def any(self, nodes: Sequence[Json]) -> Json:
        return {self.any_of: {self.items: list(nodes)}}

    def not_(self, node: Json) -> Json:
        return {self.negate: node}


PERMISSION = Tree("and_rules", "or_rules", "rules", "not_rule")
PRINCIPAL = Tree("and_ids", "or_ids", "ids", "not_id")


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a rule (a source/operation field or a `when` key) and its generator."""

    key: str
    values: tuple[str, ...]
    not_values: tuple[str, ...]
    each: ValueGen | None = None
    together: ListGen | None = None


def _authenticated(name: Json) -> Json:
    # istiod writes `authenticated` unless it uses the peer filter state (ambient, not us).
    return {"authenticated": {"principal_name": name}}


def _source_principal(value: str) -> Json:
    return _authenticated(string_matcher(value, "spiffe://"))


def _namespace(value: str) -> Json:
    pattern = ".*".join(quote_meta(part) for part in value.split("*"))
    return _authenticated(regex_matcher(f".*/ns/{pattern}/.*"))


def _service_account(policy_namespace: str) -> ValueGen:
    def generate(value: str) -> Json:
        namespace, slash, account = value.partition("/")
        if not slash:  # `sa` alone names one in the policy's namespace
            namespace, account = policy_namespace, value
        regex = f"spiffe://.+/ns/{quote_meta(namespace)}/(.+/|)sa/{quote_meta(account)}(/.+)?"
        return _authenticated(regex_matcher(regex))

    return generate


def _trust_domain(value: str) -> Json:
    if value == "*":
        return _authenticated(_string("prefix", "spiffe://"))
    if "*" not in value:
        return _authenticated(_string("prefix", f"spiffe://{value}/"))
    head, tail = value.split("*", 1)
    return _authenticated(regex_matcher(f"spiffe://{quote_meta(head)}[^/]*{quote_meta(tail)}/.*"))


def _source_ip(value: str) -> Json:
    return {"direct_remote_ip": cidr_range(value)}


def _remote_ip(value: str) -> Json:
    return {"remote_ip": cidr_range(value)}


def _payload_string(claim: str, match: Json) -> Json:
    return {"metadata": metadata_matcher(JWT_FILTER, [JWT_PAYLOAD, claim], {"string_match": match})}


def _issuer_and_subject(value: str) -> tuple[Json, Json]:
    """requestPrincipalGenerator's two matchers, as Envoy StringMatchers (authz.match reads
    the same split): `any` is the regex `.+`."""

    def envoy(part: StringMatch) -> Json:
        kind, text = part
        return regex_matcher(_ANY_VALUE) if kind == "any" else _string(kind, text)

    issuer, subject = request_principal_parts(value)
    return envoy(issuer), envoy(subject)


def _request_principals(values: Sequence[str]) -> Json:
    alternatives = []
    for value in values:
        iss, sub = _issuer_and_subject(value)
        both = [_payload_string("iss", iss), _payload_string("sub", sub)]
        alternatives.append(PRINCIPAL.all(both))
    return alternatives[0] if len(alternatives) == 1 else PRINCIPAL.any(alternatives)


def _claim(*path: str) -> ListGen:
    return lambda values: {"metadata": jwt_claim_matcher(path, string_or_value(values))}


def _bracketed(text: str) -> str:
    """util.extractNameInBrackets."""
    if not (text.startswith("[") and text.endswith("]")):
        raise InvalidValue(f"expecting format [<NAME>], but found {text}")
    return text.removesuffix("]").removeprefix("[")


def claim_path(text: str) -> list[str]:
    """util.extractNameInNestedBrackets: `[a][b]` → [a, b]; anything else one bracketed name
    (`request.auth.claims` alone is the empty path: the whole payload)."""
    claims: list[str] = []
    begin = 0
    while begin < len(text):
        end = text.find("]", begin + 1)
        if text[begin] != "[" or end < 0 or "[" in text[begin + 1 : end]:
            return [_bracketed(text)]
        claims.append(text[begin + 1 : end])
        begin = end + 1
    return claims


def _claims_key(key: str) -> ListGen:
    def generate(values: Sequence[str]) -> Json:
        path = claim_path(key.removeprefix("request.auth.claims"))
        return {"metadata": jwt_claim_matcher(path, string_or_value(values))}

    return generate


def _request_header(key: str) -> ValueGen:
    def generate(value: str) -> Json:
        name = _bracketed(key.removeprefix("request.headers"))
        return {"header": header_matcher(name, value)}

    return generate


def _host(value: str) -> Json:
    return {"header": header_matcher(":authority", value, ignore_case=True)}


def _method(value: str) -> Json:
    return {"header": header_matcher(":method", value)}


def _path(value: str) -> Json:
    if "{*}" in value or "{**}" in value:
        template = _PATH_TEMPLATE.sub(lambda m: m.group(0)[1:-1], value)
        config = {"@type": URI_TEMPLATE_TYPE, "path_template": template}
        return {"uri_template": {"name": "uri-template", "typed_config": config}}
    return {"url_path": {"path": string_matcher(value)}}


def _port(value: str) -> Json:
    return {"destination_port": port_number(value)}


def _destination_ip(value: str) -> Json:
    return {"destination_ip": cidr_range(value)}


def _sni(value: str) -> Json:
    return {"requested_server_name": string_matcher(value)}


def _envoy_filter(key: str) -> ListGen:
    """`experimental.envoy.filters.a.b[c]`: filter `envoy.filters.a.b`, metadata key `c`; a
    value `[v]` matches v inside a list."""

    def generate(values: Sequence[str]) -> Json:
        parts = key.removeprefix("experimental.").removesuffix("]").split("[", 1)
        if len(parts) != 2:
            raise InvalidValue(f"invalid key: {key}")
        matchers = [
            {"list_match": {"one_of": {"string_match": string_matcher(v.strip("[]"))}}}
            if v.startswith("[") and v.endswith("]")
            else {"string_match": string_matcher(v)}
            for v in values
        ]
        return {"metadata": metadata_matcher(parts[0], [parts[1]], or_value(matchers))}

    return generate


# --- a rule as an RBAC policy (istio model/model.go) ------------------------------------


class UnknownKey(ValueError):
    """A `when` key istiod does not know: the whole rule is skipped, whatever the action."""


_PERMISSION_KEYS: dict[str, ValueGen] = {
    "destination.ip": _destination_ip,
    "destination.port": _port,
    "connection.sni": _sni,
}
_PRINCIPAL_KEYS: dict[str, ValueGen] = {
    "source.ip": _source_ip,
    "remote.ip": _remote_ip,
    "source.namespace": _namespace,
    "source.trustDomain": _trust_domain,
    "source.principal": _source_principal,
}
_PRINCIPAL_LIST_KEYS: dict[str, ListGen] = {
    "request.auth.principal": _request_principals,
    "request.auth.audiences": _claim("aud"),
    "request.auth.presenter": _claim("azp"),
}


def condition_field(condition: Condition, namespace: str) -> tuple[Tree, Field]:
    """Which side of the policy a `when` key tests, and its generator."""
    key, values, not_values = condition.key, condition.values, condition.not_values
    if key in _PERMISSION_KEYS:
        return PERMISSION, Field(key, values, not_values, each=_PERMISSION_KEYS[key])
    if key.startswith("experimental.envoy.filters."):
        return PERMISSION, Field(key, values, not_values, together=_envoy_filter(key))
    if key in _PRINCIPAL_KEYS:
        return PRINCIPAL, Field(key, values, not_values, each=_PRINCIPAL_KEYS[key])
    if key == "source.serviceAccount":
        return PRINCIPAL, Field(key, values, not_values, each=_service_account(namespace))
    if key in _PRINCIPAL_LIST_KEYS:
        return PRINCIPAL, Field(key, values, not_values, together=_PRINCIPAL_LIST_KEYS[key])
    if key.startswith("request.headers"):
        return PRINCIPAL, Field(key, values, not_values, each=_request_header(key))
    if key.startswith("request.auth.claims"):
        return PRINCIPAL, Field(key, values, not_values, together=_claims_key(key))
    raise UnknownKey(f"unknown attribute {key}")


def source_fields(source: Source, namespace: str) -> list[Field]:
    """A source's fields in istiod's order (each is inserted in front of the last)."""
    s = source
    return [
        Field("source.principal", s.principals, s.not_principals, each=_source_principal),
        Field(
            "request.auth.principal",
            s.request_principals,
            s.not_request_principals,
            together=_request_principals,
        ),
        Field(
            "source.serviceAccount",
            s.service_accounts,
            s.not_service_accounts,
            each=_service_account(namespace),
        ),
        Field("source.trustDomain", s.trust_domains, s.not_trust_domains, each=_trust_domain),
        Field("source.namespace", s.namespaces, s.not_namespaces, each=_namespace),
        Field("remote.ip", s.remote_ip_blocks, s.not_remote_ip_blocks, each=_remote_ip),
        Field("source.ip", s.ip_blocks, s.not_ip_blocks, each=_source_ip),
    ]


def operation_fields(operation: Operation) -> list[Field]:
    o = operation
    return [
        Field(":authority", o.hosts, o.not_hosts, each=_host),
        Field(":method", o.methods, o.not_methods, each=_method),
        Field("path-matcher", o.paths, o.not_paths, each=_path),
        Field("destination.port", o.ports, o.not_ports, each=_port),
    ]


def migrate(field: Field, domains: TrustDomains, times: int = 1) -> Field:
    """Model.MigrateTrustDomain on one field. istiod shares a `when` field between the
    copies made for each `from` entry and migrates it once per copy."""
    for _ in range(times):
        change: Callable[[Sequence[str]], tuple[str, ...]]
        if field.key == "source.principal":
            change = domains.replace_aliases
        elif field.key == "source.trustDomain":
            change = domains.expand_aliases
        else:
            return field
        values = change(field.values) if field.values else ()
        not_values = change(field.not_values) if field.not_values else ()
        field = Field(field.key, values, not_values, field.each, field.together)
    return field


@dataclass(slots=True)
class Generation:
    """How one rule is being generated: ALLOW rules are dropped whole on a bad value
    (a smaller allow); DENY and AUDIT drop only the value (a wider deny), and say so."""

    name: str
    is_allow: bool
    warnings: list[str]

    def attempt(self, field: Field, generate: Callable[[T], Json], argument: T) -> Json | None:
        try:
            return generate(argument)
        except InvalidValue as exc:
            if self.is_allow:
                raise
            self.warnings.append(f"{self.name}: {field.key}: value ignored: {exc}")
            return None


def field_nodes(field: Field, tree: Tree, generation: Generation) -> list[Json]:
    """rule.permission / rule.principal: the values OR'd, the notValues OR'd under a not."""
    nodes: list[Json] = []
    for values, is_negated in ((field.values, False), (field.not_values, True)):
        if not values:
            continue
        if field.together is not None:
            node = generation.attempt(field, field.together, values)
        else:
            assert field.each is not None
            found = [generation.attempt(field, field.each, v) for v in values]
            alternatives = [n for n in found if n is not None]
            node = tree.any(alternatives) if alternatives else None
        if node is not None:
            nodes.append(tree.not_(node) if is_negated else node)
    return nodes


def _side(fields_per_entry: list[list[Field]], tree: Tree, generation: Generation) -> list[Json]:
    out = []
    for fields in fields_per_entry:
        nodes = [node for field in fields for node in field_nodes(field, tree, generation)]
        out.append(tree.all(nodes or [{"any": True}]))
    return out


def rule_policy(rule: Rule, namespace: str, domains: TrustDomains, generation: Generation) -> Json:
    """Model.New + MigrateTrustDomain + Generate for one rule (UnknownKey, or InvalidValue
    for an ALLOW rule, when istiod skips it)."""
    by_side: dict[str, list[Field]] = {"permission": [], "principal": []}
    for condition in rule.conditions:
        tree, field = condition_field(condition, namespace)
        if field.values or field.not_values:
            by_side["permission" if tree is PERMISSION else "principal"].append(field)
    copies = max(1, len(rule.sources))
    base_principal = [migrate(f, domains, copies) for f in by_side["principal"]]
    principals = [
        [migrate(f, domains) for f in source_fields(s, namespace) if f.values or f.not_values]
        + base_principal
        for s in rule.sources
    ] or [base_principal]
    permissions = [
        [f for f in operation_fields(o) if f.values or f.not_values] + by_side["permission"]
        for o in rule.operations
    ] or [by_side["permission"]]
    return {
        "permissions": _side(permissions, PERMISSION, generation),
        "principals": _side(principals, PRINCIPAL, generation),
    }


# --- filters (istio builder/builder.go) -------------------------------------------------


def policy_name(policy: AuthorizationPolicy, rule_index: int) -> str:
    """The RBAC policy name istiod writes (and Envoy reports as the effective policy)."""
    return f"ns[{policy.meta.namespace}]-policy[{policy.meta.name}]-rule[{rule_index}]"


def _rules(action: str, policies: dict[str, Json]) -> Json:
    rbac: Json = {} if action == "ALLOW" else {"action": action}
    if policies:
        rbac["policies"] = policies
    return rbac


def _shadow_stat_prefix(action: str, has_shadow: bool) -> str:
    # builder.shadowRuleStatPrefix reads the action of absent shadow rules as ALLOW (the
    # enum's zero), so every filter without dry-run policies carries the ALLOW prefix.
    if not has_shadow or action == "ALLOW":
        return DRY_RUN_ALLOW_PREFIX
    return DRY_RUN_DENY_PREFIX if action == "DENY" else ""


def action_filter(
    policies: Sequence[AuthorizationPolicy],
    action: str,
    domains: TrustDomains,
    warnings: list[str],
) -> Json:
    """One RBAC filter for the policies of one action: enforced ones in `rules`, dry-run
    ones in `shadow_rules`."""
    enforced: dict[str, Json] | None = None
    shadow: dict[str, Json] | None = None
    for policy in policies:
        if policy.is_dry_run:
            target = shadow = {} if shadow is None else shadow
        else:
            target = enforced = {} if enforced is None else enforced
        for index, rule in enumerate(policy.rules):
            name = policy_name(policy, index)
            generation = Generation(name, action == "ALLOW", warnings)
            try:
                target[name] = rule_policy(rule, policy.meta.namespace, domains, generation)
            except (UnknownKey, InvalidValue) as exc:
                warnings.append(f"{name}: rule skipped (as istiod skips it): {exc}")
        if not policy.rules:
            target[policy_name(policy, 0)] = MATCH_NEVER
    config: Json = {"@type": RBAC_TYPE}
    if enforced is not None:
        config["rules"] = _rules(action, enforced)
    if shadow is not None:
        config["shadow_rules"] = _rules(action, shadow)
    prefix = _shadow_stat_prefix(action, shadow is not None)
    if prefix:
        config["shadow_rules_stat_prefix"] = prefix
    return {"name": RBAC_FILTER, "typed_config": config}


def rbac_filters(
    policies: Sequence[AuthorizationPolicy],
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    trust_domain_aliases: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """The RBAC http filters istiod would put in front of the router for a workload to which
    exactly `policies` apply (in the order given), and warnings for what cannot be expressed
    natively. Each filter is {"name": "envoy.filters.http.rbac", "typed_config": {"@type":
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", ...}} in Envoy's v3
    YAML/JSON form with snake_case proto field names.

    `trust_domain` and its aliases are the mesh's (istiod rewrites `td/ns/x/sa/y`
    principals and expands trustDomains with them); the defaults are Istio's."""
    domains = TrustDomains((trust_domain, *trust_domain_aliases))
    warnings = [
        f"AuthorizationPolicy {p.meta.ref}: action CUSTOM (provider {p.provider!r}) has no "
        "native RBAC form (istiod delegates it to an ext_authz provider): no filter written"
        for p in policies
        if p.action == "CUSTOM"
    ]
    filters = []
    for istio_action, rbac_action in ACTION_ORDER:
        group = [p for p in policies if p.action == istio_action]
        if group:
            filters.append(action_filter(group, rbac_action, domains, warnings))
    return filters, warnings

"""Compile AuthorizationPolicy rules into predicates over (request, authentication).

Istio's semantics: a rule matches when its `from`, `to` and `when` all match; entries of one
list are OR'd, fields inside one source or operation are AND'd, the values of one field are
OR'd, and a `notX` field matches when none of its values match, an absent attribute
included (as Envoy's RBAC `not_id` does).

Each field reads the request through its Lookup (fields.py), which declares what it reads;
a compiled rule's `reads` is the union of its fields' declarations.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import AuthnResult
from extauthz.authz.fields import (
    OPERATION_FIELDS,
    SOURCE_FIELDS,
    Lookup,
    Predicate,
    condition_lookup,
)
from extauthz.authz.reads import Reads
from extauthz.config.resources import Condition, Operation, Rule, Source, yaml_name

Named = tuple[str, Predicate]


def _set_fields(
    spec: Source | Operation, fields: Mapping[str, Lookup]
) -> Iterator[tuple[str, Lookup, tuple[str, ...], bool]]:
    """(YAML name, lookup, values, negate) of each field the source or operation sets."""
    for name, lookup in fields.items():
        for attr, negate in ((name, False), (f"not_{name}", True)):
            values: tuple[str, ...] = getattr(spec, attr)
            if values:
                yield yaml_name(attr), lookup, values, negate


def _field_predicates(
    spec: Source | Operation, fields: Mapping[str, Lookup], namespace: str
) -> list[Named]:
    return [
        (name, lookup.predicate(values, negate=negate, namespace=namespace))
        for name, lookup, values, negate in _set_fields(spec, fields)
    ]


def _condition_predicate(condition: Condition) -> Predicate:
    lookup = condition_lookup(condition.key)
    parts: list[Predicate] = []
    if condition.values:
        parts.append(lookup.predicate(condition.values, negate=False))
    if condition.not_values:
        parts.append(lookup.predicate(condition.not_values, negate=True))
    return _all_of(parts)


def rule_reads(rule: Rule) -> Reads:
    """What a rule reads of a request, as the lookups of its fields declare it. A `when` key
    without a lookup is a ConfigError, as when compiling."""
    lookups = [
        *(lookup for s in rule.sources for _, lookup, _, _ in _set_fields(s, SOURCE_FIELDS)),
        *(lookup for o in rule.operations for _, lookup, _, _ in _set_fields(o, OPERATION_FIELDS)),
        *(condition_lookup(condition.key) for condition in rule.conditions),
    ]
    return Reads.union(lookup.reads for lookup in lookups)


def _all_of(predicates: Sequence[Predicate]) -> Predicate:
    if not predicates:
        return lambda attrs, authn: True
    if len(predicates) == 1:
        return predicates[0]
    items = tuple(predicates)
    return lambda attrs, authn: all(p(attrs, authn) for p in items)


def _any_of(predicates: Sequence[Predicate]) -> Predicate:
    items = tuple(predicates)
    if len(items) == 1:
        return items[0]
    return lambda attrs, authn: any(p(attrs, authn) for p in items)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule as one fast predicate, plus its named parts for explaining a decision."""

    index: int
    matches: Predicate
    # ("from", [fields of source 0, fields of source 1, ...]), ("to", ...), ("when[k]", ...)
    parts: tuple[tuple[str, tuple[tuple[Named, ...], ...]], ...]
    reads: Reads  # what `matches` reads of a request (rule_reads)
    # The "matched" explanation when it cannot depend on the request (every part has one
    # alternative, the usual case), made when the rule is compiled; None otherwise.
    match_text: str | None = None

    def explain_match(self, attrs: RequestAttributes, authn: AuthnResult) -> str:
        """`explain` for a rule known to match."""
        return self.match_text or self.explain(attrs, authn)

    def explain(self, attrs: RequestAttributes, authn: AuthnResult) -> str:
        """Which parts matched, or the first that did not, e.g.
        `rules[0]: from[0].source.notRequestPrincipals and to[0].operation.notPaths matched`
        or `rules[1]: to did not match (to[0].operation.methods)`."""
        matched: list[str] = []
        for part, alternatives in self.parts:
            hit = _first_matching(part, alternatives, attrs, authn)
            if hit is None:
                miss = _first_miss(part, alternatives, attrs, authn)
                return f"rules[{self.index}]: {part} did not match ({miss})"
            matched.append(hit)
        return f"rules[{self.index}]: " + (
            " and ".join(matched) + " matched" if matched else "empty rule matches every request"
        )


def _first_matching(
    part: str,
    alternatives: tuple[tuple[Named, ...], ...],
    attrs: RequestAttributes,
    authn: AuthnResult,
) -> str | None:
    for number, fields in enumerate(alternatives):
        if all(predicate(attrs, authn) for _, predicate in fields):
            return _alternative_text(part, number, fields)
    return None


def _alternative_text(part: str, number: int, fields: tuple[Named, ...]) -> str:
    names = ",".join(name for name, _ in fields) or "{}"
    return f"{part}[{number}].{names}" if part in ("from", "to") else part


Parts = list[tuple[str, tuple[tuple[Named, ...], ...]]]


def _fixed_match_text(index: int, parts: Parts) -> str | None:
    """What `explain` says of a matching rule whose every part has one alternative."""
    if not all(len(alternatives) == 1 for _, alternatives in parts):
        return None
    matched = [_alternative_text(part, 0, alternatives[0]) for part, alternatives in parts]
    return f"rules[{index}]: " + (
        " and ".join(matched) + " matched" if matched else "empty rule matches every request"
    )


def _first_miss(
    part: str,
    alternatives: tuple[tuple[Named, ...], ...],
    attrs: RequestAttributes,
    authn: AuthnResult,
) -> str:
    misses = []
    for number, fields in enumerate(alternatives):
        for name, predicate in fields:
            if not predicate(attrs, authn):
                misses.append(
                    f"{part}[{number}].{name}" if part in ("from", "to") else f"{part}.{name}"
                )
                break
    return ", ".join(misses)


def compile_rule(rule: Rule, index: int, namespace: str = "") -> CompiledRule:
    """`namespace`: the policy's, which a service account without one belongs to (a rule
    compiled without it refuses such a service account)."""
    parts: Parts = []
    if rule.sources:
        sources = tuple(
            tuple((f"source.{n}", p) for n, p in _field_predicates(s, SOURCE_FIELDS, namespace))
            for s in rule.sources
        )
        parts.append(("from", sources))
    if rule.operations:
        operations = tuple(
            tuple(
                (f"operation.{n}", p) for n, p in _field_predicates(o, OPERATION_FIELDS, namespace)
            )
            for o in rule.operations
        )
        parts.append(("to", operations))
    for number, condition in enumerate(rule.conditions):
        parts.append((f"when[{number}]", (((condition.key, _condition_predicate(condition)),),)))
    predicate = _all_of(
        [_any_of([_all_of([p for _, p in fields]) for fields in alts]) for _, alts in parts]
    )
    return CompiledRule(
        index, predicate, tuple(parts), rule_reads(rule), _fixed_match_text(index, parts)
    )

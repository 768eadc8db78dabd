"""Istio's order of evaluation: DENY first, then ALLOW; AUDIT and dry-run are only reported."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import AuthnResult
from extauthz.authz.reads import Reads
from extauthz.authz.rules import CompiledRule, compile_rule
from extauthz.config.parse import ConfigError
from extauthz.config.resources import AuthorizationPolicy
from extauthz.records import record


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    ref: str  # namespace/name
    action: str
    is_dry_run: bool
    rules: tuple[CompiledRule, ...]

    @property
    def reads(self) -> Reads:
        """What deciding with this policy reads of a request: what any of its rules reads
        (a rule after the first match is not evaluated, but may be for another request)."""
        return Reads.union(rule.reads for rule in self.rules)

    def first_match(self, attrs: RequestAttributes, authn: AuthnResult) -> int | None:
        """The index of the first matching rule; a policy without rules matches nothing."""
        for rule in self.rules:
            if rule.matches(attrs, authn):
                return rule.index
        return None


@record
class PolicyMatch:
    policy: str
    action: str
    rule: int

    def __str__(self) -> str:
        return f"{self.action} {self.policy} rules[{self.rule}]"


@record
class AuthzVerdict:
    is_allowed: bool
    reason: str
    policy: str = ""
    rule: int | None = None
    audits: tuple[PolicyMatch, ...] = ()
    dry_run: tuple[PolicyMatch, ...] = ()  # what dry-run policies would have done
    detail: str = ""  # for denials: the clauses that decided (computed only on a denial)


@dataclass(frozen=True, slots=True)
class CompiledPolicies:
    deny: tuple[CompiledPolicy, ...] = ()
    allow: tuple[CompiledPolicy, ...] = ()
    audit: tuple[CompiledPolicy, ...] = ()
    dry_run: tuple[CompiledPolicy, ...] = ()

    def __len__(self) -> int:
        return len(self.deny) + len(self.allow) + len(self.audit) + len(self.dry_run)


def compile_policy(policy: AuthorizationPolicy) -> CompiledPolicy | None:
    """Compile one policy once per generation; None for CUSTOM, which we cannot enforce (it
    delegates to another authorizer: loaded and reported, not enforced)."""
    if policy.action == "CUSTOM":
        return None
    try:
        rules = tuple(
            compile_rule(rule, index, policy.meta.namespace)
            for index, rule in enumerate(policy.rules)
        )
    except ConfigError as exc:
        raise ConfigError(f"{policy.origin}: AuthorizationPolicy {policy.meta.ref}: {exc}") from exc
    return CompiledPolicy(policy.meta.ref, policy.action, policy.is_dry_run, rules)


def group_policies(compiled: Iterable[CompiledPolicy]) -> CompiledPolicies:
    groups: dict[str, list[CompiledPolicy]] = {"DENY": [], "ALLOW": [], "AUDIT": [], "DRY": []}
    for policy in compiled:
        groups["DRY" if policy.is_dry_run else policy.action].append(policy)
    return CompiledPolicies(
        tuple(groups["DENY"]), tuple(groups["ALLOW"]), tuple(groups["AUDIT"]), tuple(groups["DRY"])
    )


def _matches(
    policies: Iterable[CompiledPolicy], attrs: RequestAttributes, authn: AuthnResult
) -> tuple[PolicyMatch, ...]:
    found = []
    for policy in policies:
        rule = policy.first_match(attrs, authn)
        if rule is not None:
            found.append(PolicyMatch(policy.ref, policy.action, rule))
    return tuple(found)


def _why_not(policy: CompiledPolicy, attrs: RequestAttributes, authn: AuthnResult) -> str:
    if not policy.rules:
        return f"{policy.ref} has no rules"
    return "; ".join(f"{policy.ref} {rule.explain(attrs, authn)}" for rule in policy.rules)


def evaluate(
    policies: CompiledPolicies, attrs: RequestAttributes, authn: AuthnResult
) -> AuthzVerdict:
    audits = _matches(policies.audit, attrs, authn) if policies.audit else ()
    dry_run = _matches(policies.dry_run, attrs, authn) if policies.dry_run else ()
    for policy in policies.deny:
        rule = policy.first_match(attrs, authn)
        if rule is not None:
            detail = policy.rules[rule].explain_match(attrs, authn)
            reason = f"denied by DENY policy {policy.ref}"
            return AuthzVerdict(False, reason, policy.ref, rule, audits, dry_run, detail)
    if not policies.allow:
        return AuthzVerdict(True, "no ALLOW policy applies", audits=audits, dry_run=dry_run)
    for policy in policies.allow:
        rule = policy.first_match(attrs, authn)
        if rule is not None:
            return AuthzVerdict(
                True, f"allowed by ALLOW policy {policy.ref}", policy.ref, rule, audits, dry_run
            )
    detail = "; ".join(_why_not(policy, attrs, authn) for policy in policies.allow)
    return AuthzVerdict(
        False, "no ALLOW policy matched", audits=audits, dry_run=dry_run, detail=detail[:2000]
    )

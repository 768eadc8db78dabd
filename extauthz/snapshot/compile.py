"""Compile a ConfigSet once per generation, and select what applies to a workload.

Every policy and every JWT rule is compiled when the configuration loads (so an error
anywhere rejects the generation); a workload's Snapshot is then only a selection of
compiled objects, made once per workload and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from threading import Lock

from extauthz.authn.keys import JwksError
from extauthz.authn.providers import (
    JwksSource,
    JwtProvider,
    ProviderSet,
    compile_rules,
    provider_set,
)
from extauthz.authz.evaluate import CompiledPolicies, CompiledPolicy, compile_policy, group_policies
from extauthz.bounded import BoundedCache
from extauthz.config.parse import ConfigError
from extauthz.config.resources import AuthorizationPolicy, ConfigSet, RequestAuthentication
from extauthz.config.workload import Workload, applies_to
from extauthz.snapshot.inputs import DecisionInputs, decision_inputs

# Workloads named per request (context_extensions) whose Snapshot is kept.
_MAX_WORKLOADS = 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything that decides requests for one workload in one generation."""

    generation: int
    workload: Workload
    root_namespace: str
    providers: ProviderSet
    policies: CompiledPolicies
    applied: tuple[str, ...]  # "Kind namespace/name" of every resource that applies
    inputs: DecisionInputs  # the request values these decisions read

    @property
    def jwks_sources(self) -> dict[str, JwksSource]:
        return self.providers.jwks_sources


@dataclass(slots=True)
class Generation:
    """One loaded configuration: compiled once, immutable but for its per-workload memo."""

    number: int
    config: ConfigSet
    root_namespace: str
    authns: tuple[tuple[RequestAuthentication, tuple[JwtProvider, ...]], ...]
    policies: tuple[tuple[AuthorizationPolicy, CompiledPolicy | None], ...]
    refuse_crit: bool = False  # ConfigLimits.refuse_crit, given to every ProviderSet
    # Lookups are plain reads (no reordering), so the loop and a reload's worker thread may
    # look up at once; additions take the lock.
    _snapshots: BoundedCache[Workload, Snapshot] = field(
        default_factory=lambda: BoundedCache(_MAX_WORKLOADS, refresh_on_hit=False)
    )
    _lock: Lock = field(default_factory=Lock)

    def snapshot_for(self, workload: Workload) -> Snapshot:
        found = self._snapshots.get(workload)
        if found is None:
            found = self._select(workload)
            with self._lock:
                self._snapshots.put(workload, found)
        return found

    def _select(self, workload: Workload) -> Snapshot:
        root = self.root_namespace
        authns = [(a, p) for a, p in self.authns if applies_to(a, workload, root)]
        policies = [(p, c) for p, c in self.policies if applies_to(p, workload, root)]
        providers = provider_set((p for _, chosen in authns for p in chosen), self.refuse_crit)
        return Snapshot(
            generation=self.number,
            workload=workload,
            root_namespace=root,
            providers=providers,
            policies=group_policies(c for _, c in policies if c is not None),
            applied=tuple(
                [f"RequestAuthentication {a.meta.ref}" for a, _ in authns]
                + [f"AuthorizationPolicy {p.meta.ref} ({p.action})" for p, _ in policies]
            ),
            inputs=decision_inputs(providers, (c for _, c in policies if c is not None)),
        )

    @property
    def jwks_sources(self) -> dict[str, JwksSource]:
        """Every remote key set any workload may need: one workload may be named per request."""
        return provider_set(p for _, providers in self.authns for p in providers).jwks_sources


def compile_generation(
    config: ConfigSet, root_namespace: str, number: int = 1, refuse_crit: bool = False
) -> Generation:
    try:
        authns = tuple((a, compile_rules(a)) for a in config.request_authentications)
    except JwksError as exc:  # parse.py checked every inline JWKS; this is belt and braces
        raise ConfigError(str(exc)) from exc
    policies = tuple((p, compile_policy(p)) for p in config.authorization_policies)
    return Generation(number, config, root_namespace, authns, policies, refuse_crit)


def compile_snapshot(
    config: ConfigSet, workload: Workload, root_namespace: str, generation: int = 1
) -> Snapshot:
    return compile_generation(config, root_namespace, generation).snapshot_for(workload)

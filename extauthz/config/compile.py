"""Compile a ConfigSet for one workload into a Snapshot: one immutable config generation."""

from __future__ import annotations

from dataclasses import dataclass

from extauthz.authn.keys import JwksError
from extauthz.authn.providers import JwksSource, ProviderSet, compile_providers
from extauthz.authz.evaluate import CompiledPolicies, compile_policies
from extauthz.config.parse import ConfigError
from extauthz.config.resources import ConfigSet
from extauthz.config.workload import Workload, applies_to


@dataclass(frozen=True, slots=True)
class Snapshot:
    generation: int
    workload: Workload
    root_namespace: str
    providers: ProviderSet
    policies: CompiledPolicies
    config: ConfigSet
    applied: tuple[str, ...]  # "Kind namespace/name" of every resource that applies

    @property
    def jwks_sources(self) -> dict[str, JwksSource]:
        return self.providers.jwks_sources


def compile_snapshot(
    config: ConfigSet, workload: Workload, root_namespace: str, generation: int = 1
) -> Snapshot:
    authns = [r for r in config.request_authentications if applies_to(r, workload, root_namespace)]
    policies = [p for p in config.authorization_policies if applies_to(p, workload, root_namespace)]
    try:
        providers = compile_providers(authns)
    except JwksError as exc:  # parse.py checked every inline JWKS; this is belt and braces
        raise ConfigError(str(exc)) from exc
    return Snapshot(
        generation=generation,
        workload=workload,
        root_namespace=root_namespace,
        providers=providers,
        policies=compile_policies(policies),
        config=config,
        applied=tuple(
            [f"RequestAuthentication {r.meta.ref}" for r in authns]
            + [f"AuthorizationPolicy {p.meta.ref} ({p.action})" for p in policies]
        ),
    )

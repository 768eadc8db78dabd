"""Which resources apply to a workload, by Istio's scoping rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from extauthz.config.resources import Resource

DEFAULT_ROOT_NAMESPACE = "istio-system"
# Istio binds a policy with targetRef kind Gateway to the pods of that Gateway API gateway,
# which carry this label.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __hash__(self) -> int:
        return hash((self.namespace, tuple(sorted(self.labels.items()))))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Workload)
            and self.namespace == other.namespace
            and dict(self.labels) == dict(other.labels)
        )

    def __str__(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.namespace}{{{labels}}}"


def parse_labels(text: str) -> Mapping[str, str]:
    """`app=httpbin,version=v1` -> mapping; ValueError on a malformed pair."""
    labels: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {pair!r} is not key=value")
        labels[key.strip()] = value.strip()
    return MappingProxyType(labels)


def applies_to(resource: Resource, workload: Workload, root_namespace: str) -> bool:
    """A policy applies to workloads of its own namespace; one in the root namespace to the
    whole mesh. A selector narrows that to matching labels; a targetRef binds a policy to
    the named Gateway's pods in the policy's namespace only."""
    namespace = resource.meta.namespace
    if resource.target_refs:
        return namespace == workload.namespace and any(
            ref.kind == "Gateway" and workload.labels.get(GATEWAY_NAME_LABEL) == ref.name
            for ref in resource.target_refs
        )
    if namespace not in (workload.namespace, root_namespace):
        return False
    return resource.selector is None or resource.selector.matches(workload.labels)

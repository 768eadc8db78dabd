"""k8s/integrations/: Istio's CUSTOM action and Envoy Gateway's SecurityPolicy extAuth name
extauthz's Service and Check port and fail closed; since neither sends context_extensions,
each renders an extauthz whose own workload (EXTAUTHZ_NAMESPACE/LABELS) is the gateway's, and
whose fail-closed default selects that gateway. Rendered with kubectl where installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.config.parse import load_config
from extauthz.config.workload import Workload, applies_to, parse_labels
from tests.support.manifests import INTEGRATIONS, K8S, dir_params, find, manifests_in

ISTIO = K8S / "integrations" / "istio"
ENVOY_GATEWAY = K8S / "integrations" / "envoy-gateway"


def _render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the integrations' patches are not rendered")
    done = subprocess.run([kubectl, "kustomize", str(directory)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _gateway_workload(directory: Path) -> Workload:
    if directory == ISTIO:
        [policy] = [
            m
            for m in manifests_in(ISTIO / "authorizationpolicy.yaml")
            if m.kind == "AuthorizationPolicy"
        ]
        return Workload(policy.namespace, policy.spec["selector"]["matchLabels"])
    [policy] = [
        m for m in manifests_in(ENVOY_GATEWAY / "securitypolicy.yaml") if m.kind == "SecurityPolicy"
    ]
    [gateway] = policy.spec["targetRefs"]
    return Workload(
        policy.namespace, {"gateway.envoyproxy.io/owning-gateway-name": gateway["name"]}
    )


@pytest.mark.parametrize("directory", dir_params(INTEGRATIONS))
def test_extauthz_decides_as_the_gateway(directory: Path, tmp_path: Path) -> None:
    docs = _render(directory)
    deployment = _one(docs, "Deployment", "extauthz")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {var["name"]: var["value"] for var in container["env"]}
    workload = Workload(env["EXTAUTHZ_NAMESPACE"], parse_labels(env["EXTAUTHZ_LABELS"]))
    assert workload == _gateway_workload(directory)
    # The fail-closed default selects that workload, as Istio would apply it.
    defaults = _one(docs, "ConfigMap", "extauthz-defaults")["data"]["defaults.yaml"]
    (tmp_path / "defaults.yaml").write_text(defaults)
    [allow_nothing] = load_config([tmp_path]).authorization_policies
    assert applies_to(allow_nothing, workload, "istio-system")
    assert allow_nothing.action == "ALLOW" and not allow_nothing.rules


def test_istio_provider_points_at_extauthz() -> None:
    [operator] = manifests_in(ISTIO / "install" / "istio-operator.yaml")
    [provider] = operator.spec["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    name, namespace, *_ = grpc["service"].split(".")
    service = find("Service", namespace, name)
    assert service and grpc["port"] in [
        p["port"] for p in service.spec["ports"] if p["name"] == "grpc"
    ]
    assert grpc["failOpen"] is False
    [policy] = [
        m
        for m in manifests_in(ISTIO / "authorizationpolicy.yaml")
        if m.kind == "AuthorizationPolicy"
    ]
    assert policy.spec["action"] == "CUSTOM" and policy.spec["provider"]["name"] == provider["name"]
    assert policy.namespace == "istio-system", "the root namespace or the gateway's"


def test_envoy_gateway_ext_auth_points_at_extauthz() -> None:
    objects = manifests_in(ENVOY_GATEWAY / "securitypolicy.yaml")
    [policy] = [m for m in objects if m.kind == "SecurityPolicy"]
    ext_auth = policy.spec["extAuth"]
    assert ext_auth["failOpen"] is False
    [backend] = ext_auth["grpc"]["backendRefs"]
    service = find("Service", backend["namespace"], backend["name"])
    assert service and backend["port"] in [
        p["port"] for p in service.spec["ports"] if p["name"] == "grpc"
    ]
    # A cross-namespace backend needs the Service's namespace to grant it.
    [grant] = [m for m in objects if m.kind == "ReferenceGrant"]
    assert grant.namespace == backend["namespace"]
    assert {"kind": "SecurityPolicy", "namespace": policy.namespace}.items() <= grant.spec["from"][
        0
    ].items()
    assert grant.spec["to"][0]["name"] == backend["name"]

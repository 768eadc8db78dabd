"""k8s/: the manifests are valid Kubernetes objects, every kustomization builds, and what they
name agrees with the image (docker/Dockerfile), the CLI, the Envoy configs and the Istio
policies they carry. Offline: no cluster is needed (kubectl, when installed, only renders).

This file: every manifest is a valid, named Kubernetes object. The other topics are in
test_k8s_kustomize.py, test_k8s_extauthz.py, test_k8s_policies.py, test_k8s_envoy.py,
test_k8s_services.py and test_k8s_security.py; the helpers in tests/support/manifests.py
and tests/support/pods.py."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.support.manifests import (
    CUSTOM_RESOURCES,
    K8S,
    MANIFEST_FILES,
    MANIFESTS,
    POD_KINDS,
    Manifest,
    documents,
    ids,
    is_in_component,
    rel,
)

# The oldest Kubernetes the manifests are written for (preStop `sleep` is on by default from
# 1.30); kubernetes-validate ships its schemas (pyproject.toml pins a release that has them).
KUBERNETES_VERSION = "1.30.0"
CLUSTER_SCOPED = {"Namespace"}


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=[rel(p) for p in MANIFEST_FILES])
def test_manifest_file_holds_named_objects(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{rel(path)} holds no object"
    for doc in docs:
        assert isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= doc.keys()
        manifest = Manifest(path, doc)
        assert manifest.name, f"{rel(path)}: a {manifest.kind} without a name"
        # Explicit namespaces: `kubectl apply -f` lands them right too, and the checks
        # resolve names without guessing.
        if manifest.kind in CLUSTER_SCOPED:
            assert not manifest.namespace, f"{manifest} is cluster-scoped"
        elif is_in_component(path):
            # A component's objects land in the namespace of the app that uses it.
            assert not manifest.namespace, f"{manifest}: the using kustomization sets it"
        else:
            assert manifest.namespace, f"{manifest} names no namespace"


def test_every_yaml_file_under_k8s_is_checked() -> None:
    strays = sorted(rel(p) for p in K8S.rglob("*.yml"))
    assert not strays, f"name them *.yaml so the checks find them: {strays}"
    assert {m.file for m in MANIFESTS} == set(MANIFEST_FILES)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=ids(MANIFESTS))
def test_manifest_validates_against_the_kubernetes_schema(manifest: Manifest) -> None:
    try:
        kubernetes_validate.validate(manifest.body, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        assert manifest.api in CUSTOM_RESOURCES, f"{manifest}: no schema for {manifest.api}"
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{manifest}: {where}: {exc.message}")


def test_objects_are_unique() -> None:
    keys = [(m.kind, m.namespace, m.name) for m in MANIFESTS]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_pods_come_from_known_workload_kinds() -> None:
    # The other checks read pod templates of these kinds; anything else would escape them.
    kinds = {m.kind for m in MANIFESTS if "template" in m.spec or m.kind == "Pod"}
    assert kinds <= POD_KINDS

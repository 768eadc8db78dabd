"""k8s/: every kustomization lists what exists and builds (rendered by kubectl when it is
installed, and compared with the model tests/support/manifests.py makes of it), each base and
demo applies on its own without custom resource definitions, and the README's commands name
what exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy_files import REPO
from tests.support.manifests import (
    BASES,
    COMPONENTS,
    CONTAINERS,
    CUSTOM_RESOURCES,
    EXTAUTHZ,
    INTEGRATIONS,
    K8S,
    KUSTOMIZATIONS,
    MANIFEST_FILES,
    PATCH_FILES,
    PATTERNS,
    POD_KINDS,
    VERSION,
    Manifest,
    closure,
    dir_params,
    find,
    pod_containers,
    rel,
)
from tests.support.manifests import kustomization as _kustomization


def _closure_manifests(directory: Path) -> list[Manifest]:
    return closure(directory)


def _key(body: dict[str, Any]) -> tuple[str, str, str]:
    return body["kind"], body["metadata"].get("namespace", ""), body["metadata"]["name"]


APPLIED = [d for d in KUSTOMIZATIONS if d not in COMPONENTS]
# These patch a base on purpose (the workload extauthz decides for): test_k8s_integrations.py
# reads their rendering.
INTEGRATION_DIRS = set(INTEGRATIONS)


def _users(component: Path) -> list[Path]:
    return [
        d
        for d in APPLIED
        if any((d / c).resolve() == component for c in _kustomization(d).get("components", []))
    ]


@pytest.mark.parametrize("directory", dir_params(KUSTOMIZATIONS))
def test_kustomization_lists_existing_resources(directory: Path) -> None:
    kustomization = _kustomization(directory)
    # A Component (k8s/base/sidecar) is kustomize's reusable piece, used from `components:`.
    assert (kustomization["apiVersion"], kustomization["kind"]) in {
        ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
        ("kustomize.config.k8s.io/v1alpha1", "Component"),
    }
    resources = kustomization.get("resources", [])
    assert resources and len(resources) == len(set(resources))
    for entry in [*resources, *kustomization.get("components", [])]:
        path = directory / entry
        assert path.exists(), f"{rel(directory)}/kustomization.yaml: {entry} does not exist"
        assert path.resolve().is_relative_to(K8S)
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{entry} is no kustomization"
        else:
            assert path.suffix == ".yaml"


def test_every_manifest_is_in_a_kustomization() -> None:
    listed = {
        (directory / entry).resolve()
        for directory in KUSTOMIZATIONS
        for entry in _kustomization(directory).get("resources", [])
    }
    missing = [rel(path) for path in MANIFEST_FILES if path not in listed]
    assert not missing, f"no kustomization.yaml lists {missing}"
    assert all(path.is_file() for path in PATCH_FILES)


@pytest.mark.parametrize("directory", dir_params([K8S, *BASES, *PATTERNS]))
def test_patterns_need_no_custom_resource_definitions(directory: Path) -> None:
    # `kubectl apply -k k8s/base/shared` (or a demo) must work on a cluster without the Prometheus Operator.
    custom = [str(m) for m in _closure_manifests(directory) if m.api in CUSTOM_RESOURCES]
    assert not custom, f"move to a monitoring kustomization: {custom}"


@pytest.mark.parametrize("directory", dir_params(PATTERNS))
def test_pattern_applies_on_its_own(directory: Path) -> None:
    manifests = _closure_manifests(directory)
    created = {(m.kind, m.namespace, m.name) for m in manifests}
    for manifest in manifests:
        if manifest.namespace:
            assert ("Namespace", "", manifest.namespace) in created, f"{manifest}: no namespace"
    for container in (c for c in CONTAINERS if c.workload in manifests):
        for volume in container.pod.get("volumes", []):
            if "configMap" in volume:
                wanted = ("ConfigMap", container.namespace, volume["configMap"]["name"])
                assert wanted in created, f"{container}: {wanted} is not in {rel(directory)}"
        account = container.pod.get("serviceAccountName")
        if account:
            assert ("ServiceAccount", container.namespace, account) in created


@pytest.mark.parametrize("directory", dir_params(APPLIED))
def test_kustomization_renders_its_files(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is not checked")
    done = subprocess.run([kubectl, "kustomize", str(directory)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    names = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in rendered
    }
    expected = {(m.kind, m.namespace, m.name) for m in _closure_manifests(directory)}
    assert names == expected
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in POD_KINDS
        for c in pod_containers(d["spec"]["template"]["spec"])
        if c["image"].rsplit("/", 1)[-1].startswith("extauthz:")
    }
    assert images <= {f"extauthz:{VERSION}"}
    # The objects the other tests read are the ones kubectl renders (the component's merge
    # above all), except where an integration patches a base on purpose.
    if directory in INTEGRATION_DIRS:
        return
    model = {_key(m.body): m.body for m in _closure_manifests(directory)}
    for doc in rendered:
        assert doc == model[_key(doc)], f"{_key(doc)}: the model differs from kubectl's"


@pytest.mark.parametrize("directory", dir_params(BASES))
def test_kustomization_names_the_extauthz_image(directory: Path) -> None:
    # Users push the image to their registry and change this entry (kustomize `images:`), in
    # the bases; the demos take it from them.
    assert _kustomization(directory)["images"] == [
        {"name": "extauthz", "newName": "extauthz", "newTag": VERSION}
    ]
    applied = _users(directory) if directory in COMPONENTS else [directory]
    objects = [m for d in applied for m in _closure_manifests(d)]
    images = {c.image for c in EXTAUTHZ if c.workload in objects}
    assert images == {f"extauthz:{VERSION}"}


def test_readme_commands_name_what_exists() -> None:
    readme = (K8S / "README.md").read_text()
    for path in re.findall(r"\bk8s(?:/[\w.-]+)*", readme):
        assert (REPO / path.rstrip(".")).exists(), f"k8s/README.md names {path}"
    for directory in re.findall(r"kubectl (?:apply|delete) -k ([\w./-]+)", readme):
        assert (REPO / directory / "kustomization.yaml").is_file(), directory
    execs = re.findall(r"kubectl -n (\S+) exec deploy/(\S+)", readme)
    assert execs
    for namespace, name in execs:
        assert find("Deployment", namespace, name), f"no Deployment {namespace}/{name}"

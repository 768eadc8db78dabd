"""k8s/base/: what production applies holds no demo (no namespace object, no workload but
extauthz, no sample key), uses no alpha field, pins its images, and gives extauthz the
writable /tmp that --workers needs under the read-only root filesystem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.deploy_files import SAMPLES
from tests.support.manifests import (
    BASES,
    CONTAINERS,
    EXTAUTHZ,
    MANIFESTS,
    Container,
    Manifest,
    closure,
    dir_params,
    ids,
    is_in_component,
)
from tests.support.pods import serve_args

SAMPLE_KEY_IDS = [key["kid"] for key in json.loads((SAMPLES / "jwks.json").read_text())["keys"]]
SAMPLE_MARKERS = [*SAMPLE_KEY_IDS, "testing@secure.istio.io"]


def _base_objects(directory: Path) -> list[Manifest]:
    if is_in_component(directory):
        return [m for m in MANIFESTS if is_in_component(m.file)]
    return closure(directory)


def _base_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.yaml"))


@pytest.mark.parametrize("directory", dir_params(BASES))
def test_base_creates_no_namespace(directory: Path) -> None:
    # `kubectl delete -k` on a base must never delete a namespace.
    assert not [m for m in _base_objects(directory) if m.kind == "Namespace"]


@pytest.mark.parametrize("directory", dir_params(BASES))
def test_base_runs_no_demo_workload(directory: Path) -> None:
    objects = _base_objects(directory)
    workloads = [c for c in CONTAINERS if c.workload in objects]
    assert all(c.is_extauthz for c in workloads), [str(c) for c in workloads]
    for path in _base_files(directory):
        text = path.read_text()
        for demo in ("sleep", "httpbin", "bookinfo", "productpage", "nginx-proxy"):
            assert not re.search(rf"^\s*(name|image): .*{demo}", text, re.M), f"{path}: {demo}"


@pytest.mark.parametrize("directory", dir_params(BASES))
def test_base_carries_no_sample_key_or_issuer(directory: Path) -> None:
    # Istio's sample key's private half is public: anyone could mint tokens it accepts.
    for path in _base_files(directory):
        text = path.read_text()
        for marker in SAMPLE_MARKERS:
            assert marker not in text, f"{path.name} carries the sample {marker!r}"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=ids(MANIFESTS))
def test_no_alpha_lifecycle_sleep(manifest: Manifest) -> None:
    # preStop.sleep (PodLifecycleSleepAction) is alpha and off in 1.29: the API server drops
    # it silently, and the pod then has no drain at all.
    text = json.dumps(manifest.body)
    assert '"sleep": {"seconds"' not in text, f"{manifest}: use an exec sleep"


@pytest.mark.parametrize("container", CONTAINERS, ids=ids(CONTAINERS))
def test_image_is_pinned(container: Container) -> None:
    name, _, tag = container.image.rpartition(":")
    assert name and "/" not in tag, f"{container}: {container.image} has no tag"
    assert "latest" not in tag, f"{container}: {container.image} floats"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_has_a_writable_tmp(container: Container) -> None:
    # --workers keeps prometheus-client's multiprocess files in a temporary directory.
    assert container.spec["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in container.pod["volumes"]}
    [tmp] = [m for m in container.spec["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert not tmp.get("readOnly") and "emptyDir" in volumes[tmp["name"]]
    size = volumes[tmp["name"]]["emptyDir"].get("sizeLimit")
    assert size, "bound the scratch space (an in-memory emptyDir counts in the memory limit)"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_memory_limit_fits_its_workers(container: Container) -> None:
    workers = int(getattr(serve_args(container), "workers", 1) or 1)
    limit = str(container.spec["resources"]["limits"]["memory"])
    assert limit.endswith("Mi") and int(limit[:-2]) >= 128 * workers + 64

"""k8s/: the Istio policies carried in ConfigMaps validate, each is read by an extauthz, the
shared pattern keeps the gateway sample, and every jwksUri is served inside the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from extauthz.cli import main
from tests.support.deploy_files import SAMPLES, nginx_alias
from tests.support.manifests import (
    EXTAUTHZ,
    ISTIO_CONFIGS,
    Container,
    Manifest,
    documents,
    mounted_files,
    mounted_text,
    of_kind,
)
from tests.support.pods import listens, policy_files, policy_sources, reach


@pytest.mark.parametrize(("config_map", "key"), ISTIO_CONFIGS)
def test_embedded_istio_yaml_validates(
    config_map: Manifest, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / key
    path.write_text(config_map.body["data"][key])
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    for doc in documents(path):
        assert doc["metadata"].get("namespace"), (
            f"{key}: {doc['metadata']['name']} has no namespace"
        )


def test_every_embedded_policy_is_read_by_an_extauthz() -> None:
    read = {(m.name, key) for c in EXTAUTHZ for m, key in policy_sources(c).values()}
    embedded = {(p.values[0].name, p.values[1]) for p in ISTIO_CONFIGS}
    assert len(embedded) >= 3 and embedded == read


def test_shared_policies_keep_the_gateway_sample() -> None:
    [config_map] = [m for m in of_kind("ConfigMap") if "gateway-policies.yaml" in m.body["data"]]
    text = config_map.body["data"]["gateway-policies.yaml"]
    sample = (SAMPLES / "gateway-policies.yaml").read_text()
    assert list(yaml.safe_load_all(text)) == list(yaml.safe_load_all(sample))


def _jwks_uris(container: Container) -> list[str]:
    return [
        rule["jwksUri"]
        for text in policy_files(container).values()
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "RequestAuthentication"
        for rule in doc["spec"].get("jwtRules", [])
        if "jwksUri" in rule
    ]


def test_jwks_uris_are_served_in_the_cluster() -> None:
    uris = [(c, uri) for c in EXTAUTHZ for uri in _jwks_uris(c)]
    assert uris, "the sidecar pattern should fetch its keys"
    for container, uri in uris:
        url = urlsplit(uri)
        [server] = reach(container, str(url.hostname), url.port or 80)
        files = mounted_files(server)
        conf = "\n".join(mounted_text(server, str(p)) for p in files if p.suffix == ".conf")
        ports = listens(server)
        assert any(f"listen {p};" in conf for p in ports), f"{server}: nginx listens elsewhere"
        served = json.loads(mounted_text(server, nginx_alias(conf, uri)))
        assert served == json.loads((SAMPLES / "jwks.json").read_text())

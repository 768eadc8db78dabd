"""`extauthz envoy-config` as a user runs it: the workload chosen as `serve` chooses it, the
same exit codes, both formats, keys fetched once over real HTTP (or left to Envoy), and every
bootstrap accepted by `envoy --mode validate`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from extauthz.native.jwt_authn import PUBLIC_ONLY_JWKS
from extauthz.rig.processes import Process, answers_200, free_port
from extauthz.rig.rig import SAMPLES, find_binary
from tests.support.commands import run

GATEWAY = ("--namespace", "istio-system", "--labels", "app=istio-ingressgateway")
SAMPLE = str(SAMPLES / "gateway-policies.yaml")


def _envoy_validates(path: Path) -> None:
    result = subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_filters_format_has_exactly_the_two_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "envoy-config", "--config", SAMPLE, *GATEWAY)
    assert (code, err) == (0, "")
    document = yaml.safe_load(out)
    assert list(document) == ["http_filters", "clusters"]
    names = [f["name"] for f in document["http_filters"]]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.rbac"]
    assert document["clusters"] == []
    assert "&id" not in out  # no YAML anchors for a user to untangle


def test_bootstrap_passes_envoy_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "envoy.yaml"
    code, _, err = run(
        capsys, "envoy-config", "--config", SAMPLE, *GATEWAY, "--format", "bootstrap",
        "--listen", "127.0.0.1:18080", "--upstream", "127.0.0.1:18000", "-o", str(output),
    )  # fmt: skip
    assert (code, err) == (0, "")
    _envoy_validates(output)


def test_another_workload_gets_no_filters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "envoy-config", "--config", SAMPLE, "--namespace", "foo")
    assert code == 0
    assert yaml.safe_load(out) == {"http_filters": [], "clusters": []}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(("--labels", "app"), 2, "is not key=value", id="bad-labels"),
        pytest.param(("--listen", "nowhere"), 2, "is not HOST:PORT", id="bad-listen"),
        pytest.param(("--upstream", "h:99999"), 2, "is not HOST:PORT", id="bad-upstream"),
    ],
)
def test_usage_errors_exit_2_like_serve(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int, message: str
) -> None:
    got, out, err = run(capsys, "envoy-config", "--config", SAMPLE, *argv)
    assert (got, out) == (code, "")
    assert message in err


def test_a_configuration_serve_refuses_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: security.istio.io/v1\nkind: AuthorisationPolicy\n")
    code, out, err = run(capsys, "envoy-config", "--config", str(broken))
    assert (code, out) == (1, "")
    assert err.startswith("extauthz: invalid configuration:")
    code, out, err = run(capsys, "envoy-config", "--config", str(tmp_path / "missing.yaml"))
    assert (code, out) == (1, "")


def _remote_policy(tmp_path: Path, jwks_uri: str) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: {jwks_uri}
""")
    return path


@pytest.fixture
def jwks_url(tmp_path: Path) -> Iterator[str]:
    """The sample JWKS served over real HTTP by the rig's JWKS server."""
    port = free_port()
    server = Process(
        "jwks",
        [sys.executable, "-m", "extauthz.rig.servers", "jwks", "--port", str(port),
         "--jwks-file", str(SAMPLES / "jwks.json")],
        tmp_path,
    )  # fmt: skip
    server.start()
    try:
        url = f"http://127.0.0.1:{port}/get_jwks"
        server.wait_until(answers_200(url))
        yield url
    finally:
        server.stop()


def test_inline_mode_fetches_the_keys_once_and_inlines_them(
    tmp_path: Path, jwks_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _remote_policy(tmp_path, jwks_url)
    code, out, err = run(capsys, "envoy-config", "--config", str(policy), "--namespace", "foo")
    assert (code, err) == (0, "")
    provider = yaml.safe_load(out)["http_filters"][0]["typed_config"]["providers"]["origins-0"]
    assert provider["local_jwks"] == {"inline_string": (SAMPLES / "jwks.json").read_text()}


def test_keys_that_cannot_be_fetched_fail_closed_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks"
    policy = _remote_policy(tmp_path, dead)
    code, out, err = run(capsys, "envoy-config", "--config", str(policy), "--namespace", "foo")
    assert code == 0  # the output is still Istio's: istiod does the same
    provider = yaml.safe_load(out)["http_filters"][0]["typed_config"]["providers"]["origins-0"]
    assert provider["local_jwks"] == {"inline_string": PUBLIC_ONLY_JWKS}
    assert "warning" in err and dead in err and "every token of this rule is rejected" in err


def test_remote_mode_leaves_fetching_to_envoy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _remote_policy(tmp_path, "https://keys.example.com/jwks.json")
    output = tmp_path / "envoy.yaml"
    code, _, err = run(
        capsys, "envoy-config", "--config", str(policy), "--namespace", "foo", "--jwks",
        "remote", "--format", "bootstrap", "-o", str(output),
    )  # fmt: skip
    assert (code, err) == (0, "")
    config = yaml.safe_load(output.read_text())
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    assert "jwks|keys.example.com|443" in clusters
    _envoy_validates(output)


def test_refuse_crit_is_said_to_have_no_envoy_equivalent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "envoy-config", "--config", SAMPLE, *GATEWAY, "--refuse-crit")
    assert code == 0
    assert "--refuse-crit has no Envoy equivalent" in err

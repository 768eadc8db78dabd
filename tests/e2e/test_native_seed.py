"""`extauthz envoy-config --format bootstrap` for Istio's sample scenario, run by the Envoy
from PyPI with no extauthz behind it: the same matrix (200/403, and 401 for bad tokens) as
the ext_authz rig, from Envoy's own jwt_authn and RBAC filters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from extauthz.rig.demo import http_get, matrix_cases
from extauthz.rig.processes import Process, answers_200, free_port
from extauthz.rig.rig import SAMPLES, find_binary
from extauthz.rig.tokens import invalid_tokens

pytestmark = pytest.mark.e2e

GATEWAY = ("--namespace", "istio-system", "--labels", "app=istio-ingressgateway")


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The native bootstrap in front of the rig's productpage app; yields its URL."""
    workdir = Path(tmp_path_factory.mktemp("native"))
    listen, upstream, admin = free_port(), free_port(), free_port()
    config = workdir / "native.yaml"
    subprocess.run(
        [sys.executable, "-m", "extauthz", "envoy-config", "--config",
         str(SAMPLES / "gateway-policies.yaml"), *GATEWAY, "--format", "bootstrap",
         "--listen", f"127.0.0.1:{listen}", "--upstream", f"127.0.0.1:{upstream}",
         "--admin", f"127.0.0.1:{admin}", "--output", str(config)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    app = Process(
        "productpage",
        [sys.executable, "-m", "extauthz.rig.servers", "productpage", "--port", str(upstream)],
        workdir,
    )
    envoy = Process(
        "envoy-native",
        [find_binary("envoy"), "-c", str(config), "--concurrency", "1",
         "--disable-hot-restart", "-l", "warning"],
        workdir,
    )  # fmt: skip
    try:
        app.start()
        envoy.start()
        envoy.wait_until(answers_200(f"http://127.0.0.1:{admin}/ready"))
        app.wait_until(answers_200(f"http://127.0.0.1:{upstream}/productpage"))
        yield f"http://127.0.0.1:{listen}"
    finally:
        envoy.stop()
        app.stop()


TOKENS = {"none": "", "demo": (SAMPLES / "demo.jwt").read_text().strip()}
TOKENS.update({name: token for name, (token, _) in invalid_tokens(TOKENS["demo"]).items()})
CASES = matrix_cases()


@pytest.mark.parametrize("via", ["header", "query"])
@pytest.mark.parametrize(
    ("path", "token_name", "expected"), CASES, ids=[f"{p}-{t}-{s}" for p, t, s in CASES]
)
def test_native_bootstrap_reproduces_the_sample_matrix(
    native: str, path: str, token_name: str, expected: int, via: str
) -> None:
    token = TOKENS[token_name]
    url, headers = f"{native}{path}", {}
    if token and via == "query":
        url = f"{url}?access_token={quote(token)}"
    elif token:
        headers = {"Authorization": f"Bearer {token}"}
    answer = http_get(url, headers)
    assert answer.status == expected, answer.body
    if expected == 403:
        assert answer.body == "RBAC: access denied"

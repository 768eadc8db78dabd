"""Driving `extauthz check | token | jwks | test` as a user would: through the CLI's main(),
with the sample gateway's workload, and cases files next to copies of the samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from extauthz.cli import main
from extauthz.rig.rig import SAMPLES

GATEWAY = [
    "--config",
    str(SAMPLES / "gateway-policies.yaml"),
    "--namespace",
    "istio-system",
    "--labels",
    "app=istio-ingressgateway",
]
DEMO = (SAMPLES / "demo.jwt").read_text().strip()
ISSUER = "https://issuer.test"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `extauthz *argv`."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cases_file(tmp_path: Path, body: str) -> Path:
    """A cases file next to copies of the sample policy, token and key."""
    for name in ("gateway-policies.yaml", "demo.jwt", "key.pem"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    path = tmp_path / "cases.yaml"
    path.write_text(
        "config: gateway-policies.yaml\n"
        "workload: {namespace: istio-system, labels: {app: istio-ingressgateway}}\n" + body
    )
    return path

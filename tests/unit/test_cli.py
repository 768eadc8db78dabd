from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from extauthz.cli import main
from extauthz.rig.rig import SAMPLES


def test_validate_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "validate",
                str(SAMPLES / "gateway-policies.yaml"),
                str(SAMPLES / "sidecar-policies.yaml"),
            ]
        )
        == 0
    )
    assert "ok: 2 RequestAuthentication, 1 AuthorizationPolicy" in capsys.readouterr().out


def test_validate_reports_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - to:\n    - operation: {pathz: [/]}\n"
    )
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"{bad}:7: error: document 1: AuthorizationPolicy default/p: field "
        "spec.rules[0].to[0].operation.pathz: unknown field (not in the Istio CRD)"
    )


CASES = [
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec: {action: DENY}\n",
        "DENY without rules matches nothing",
        "deny-without-rules",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec: {}\n",
        "ALLOW without rules denies every request",
        "allow-nothing",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c, namespace: foo}\nspec: {action: CUSTOM, provider: {name: opa}}\n",
        "action CUSTOM delegates to another authorizer (opa)",
        "custom",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec: {action: DENY, rules: [{}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec: {rules: [{}]}\n",
        "unreachable ALLOW",
        "unreachable-allow",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: t, namespace: foo}\nspec:\n  targetRef: {kind: Service, name: s}\n  action: DENY\n  rules: [{}]\n",
        "selects nothing here",
        "targetref-service",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: foo}\nspec:\n  jwtRules: [{issuer: 'https://idp'}]\n",
        "OIDC discovery at https://idp/.well-known/openid-configuration",
        "oidc-discovery",
    ),
    (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec: {action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}\n",
        "skipped v1/ConfigMap",
        "other-kind",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "warning"), [c[:2] for c in CASES], ids=[c[2] for c in CASES]
)
def test_validate_warns_about_surprises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_text: str, warning: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml_text)
    assert main(["validate", str(path)]) == 0
    assert warning in capsys.readouterr().err


def test_serve_with_invalid_config_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: MAYBE}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--config", str(bad), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "invalid configuration" in done.stderr and "'MAYBE' is not one of" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_rejects_bad_labels(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--config", str(SAMPLES), "--labels", "app"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "label 'app' is not key=value" in done.stderr

"""`extauthz validate` and every command's --help, through the CLI's main(). As a process
(`python -m extauthz`: exit status, one-line errors): tests/integration/test_cli.py."""

from __future__ import annotations

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


@pytest.mark.parametrize("command", ["check", "token", "jwks", "test"])
def test_every_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "examples:" in out and f"extauthz {command}" in out


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["--grpc-tls-cert", "c.pem"], id="cert-without-key"),
        pytest.param(["--grpc-tls-key", "k.pem"], id="key-without-cert"),
        pytest.param(["--grpc-client-ca", "ca.pem"], id="client-ca-without-cert"),
    ],
)
def test_grpc_tls_flags_go_together(capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    code = main(["serve", "--config", "x.yaml", *flags])
    assert code == 2
    assert "--grpc-tls-cert and --grpc-tls-key go together" in capsys.readouterr().err

"""`python -m extauthz ...` as a process: exit status, one line on stderr, no traceback.
The same commands in process, through main(): tests/unit/test_cli.py, test_*_command.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from extauthz.rig.rig import SAMPLES
from tests.support.commands import GATEWAY, cases_file


def run_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extauthz", *argv], capture_output=True, text=True, timeout=60
    )


# -- serve ------------------------------------------------------------------------------------


def test_serve_with_invalid_config_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: MAYBE}\n"
    )
    done = run_process(
        "serve", "--config", str(bad), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"
    )
    assert done.returncode == 1
    assert "invalid configuration" in done.stderr and "'MAYBE' is not one of" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_rejects_bad_labels(tmp_path: Path) -> None:
    done = run_process("serve", "--config", str(SAMPLES), "--labels", "app")
    assert done.returncode == 2
    assert "label 'app' is not key=value" in done.stderr


# -- check -----------------------------------------------------------------------------------


def test_check_invalid_policy_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: MAYBE}\n"
    )
    done = run_process("check", "--config", str(bad), "/x")
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "'MAYBE' is not one of" in done.stderr


@pytest.mark.parametrize(
    ("path", "code"),
    [pytest.param("/productpage", 0, id="allowed-0"), pytest.param("/api/v1/products/0", 1, id="denied-1")],
)  # fmt: skip
def test_check_exit_status_of_the_process(path: str, code: int) -> None:
    done = run_process("check", *GATEWAY, path)
    assert done.returncode == code, done.stderr
    assert done.stderr == ""


# -- test ------------------------------------------------------------------------------------


def test_cases_with_an_invalid_policy_exit_2(tmp_path: Path) -> None:
    cases = cases_file(tmp_path, "cases: [{name: a, path: /x, status: 200}]")
    (tmp_path / "gateway-policies.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{to: [{operation: {pathz: [/]}}]}]}\n"
    )
    done = run_process("test", str(cases))
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "config:" in done.stderr and "pathz: unknown field" in done.stderr

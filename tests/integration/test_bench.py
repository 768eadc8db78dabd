"""The benchmark's pieces that run something (bench/): Envoy accepts the configs the builders
produce (`envoy --mode validate`), and bench/authn_cost.py runs. No timing is asserted. The
in-process parts (parsers, body framing, tokens, tables): tests/unit/test_bench.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import configs, tokens
from extauthz.rig.rig import find_binary


# -- Envoy accepts what the builders produce ----------------------------------------------------
def _jwks() -> str:
    return tokens.jwks_json([tokens.sample_rs256_key(), tokens.new_es256_key()])


BUILT: dict[str, Any] = {
    "a-direct": lambda: configs.no_auth(10000, 10001, None),
    "a-upstream": lambda: configs.no_auth(10000, 10001, 10002),
    "b-native": lambda: configs.native_jwt(10000, 10001, 10002, _jwks()),
    "c-and-d": lambda: configs.ext_authz(10000, 10001, 10003, 10002),
}


@pytest.mark.parametrize("name", list(BUILT))
def test_envoy_validates_built_config(name: str, tmp_path: Path) -> None:
    path = configs.write_config(BUILT[name](), tmp_path / f"{name}.yaml")
    done = subprocess.run([find_binary("envoy"), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_validate_reports_a_broken_config(tmp_path: Path) -> None:
    config = configs.native_jwt(1, 2, 3, _jwks())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["http_filters"][1]["typed_config"]["rules"]["action"] = "MAYBE"
    complaint = configs.validate(configs.write_config(config, tmp_path / "broken.yaml"))
    assert complaint is not None and "MAYBE" in complaint
    assert configs.validate(configs.write_config(BUILT["b-native"](), tmp_path / "ok.yaml")) is None


def test_authn_cost_prints_every_stage() -> None:
    """bench/authn_cost.py runs the real Check path in process and prints one row per case
    (a smoke run with few iterations: numbers are printed, not asserted)."""
    out = subprocess.run(
        [sys.executable, "bench/authn_cost.py", "--iterations", "20"],
        capture_output=True, text=True, timeout=120, check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout  # fmt: skip
    for alg in ("RS256", "ES256"):
        for case in ("Check, a token never seen (whole path)",
                     "Check, answer remembered (same request)",
                     "fresh token: decide (signature verified)"):  # fmt: skip
            row = next(line for line in out.splitlines() if line.startswith(f"{alg} {case}"))
            assert float(row.split()[-1]) > 0

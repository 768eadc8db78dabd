"""The benchmark's pieces that run something (bench/): Envoy accepts the configs the builders
produce (`envoy --mode validate`), and bench/authn_cost.py runs. No timing is asserted. The
in-process parts (parsers, body framing, tokens, tables): tests/unit/test_bench.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench import configs, tokens
from bench.stack import source_tree_launch
from extauthz.rig.rig import SAMPLES, find_binary


# -- Envoy accepts what the builders produce ----------------------------------------------------
def _policies() -> Path:
    jwks = tokens.jwks_json([tokens.sample_rs256_key(), tokens.new_es256_key()])
    directory = Path(tempfile.mkdtemp(prefix="bench-policies-"))
    return tokens.write_gateway_policies(jwks, directory / "gateway-policies.yaml")


BUILT: dict[str, Any] = {
    "a-direct": lambda: configs.no_auth(10000, 10001, None),
    "a-upstream": lambda: configs.no_auth(10000, 10001, 10002),
    "b-native": lambda: configs.native(10000, 10001, 10002, _policies()),
    "c-and-d": lambda: configs.ext_authz(10000, 10001, 10003, 10002),
}


@pytest.mark.parametrize("name", list(BUILT))
def test_envoy_validates_built_config(name: str, tmp_path: Path) -> None:
    path = configs.write_config(BUILT[name](), tmp_path / f"{name}.yaml")
    done = subprocess.run([find_binary("envoy"), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_validate_reports_a_broken_config(tmp_path: Path) -> None:
    config = configs.native(1, 2, 3, _policies())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["http_filters"][1]["typed_config"]["rules"]["action"] = "MAYBE"
    complaint = configs.validate(configs.write_config(config, tmp_path / "broken.yaml"))
    assert complaint is not None and "MAYBE" in complaint
    assert configs.validate(configs.write_config(BUILT["b-native"](), tmp_path / "ok.yaml")) is None


def test_native_config_is_what_envoy_config_writes_for_the_same_policies(tmp_path: Path) -> None:
    """(b) is `extauthz envoy-config` for the policy file (d) serves, spliced into the
    gateway: Istio's provider, payload metadata and requirement tree, the DENY policy."""
    policies = tokens.write_gateway_policies(
        (SAMPLES / "jwks.json").read_text(), tmp_path / "policies.yaml"
    )
    config = configs.native(1, 2, 3, policies)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    assert [f["name"] for f in filters] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
        "envoy.filters.http.router",
    ]
    assert filters[:2] == configs.envoy_config_filters(policies)["http_filters"]
    [provider] = filters[0]["typed_config"]["providers"].values()
    assert provider["issuer"] == "testing@secure.istio.io"
    assert provider["payload_in_metadata"] == "payload"
    requirements = filters[0]["typed_config"]["rules"][0]["requires"]["requires_any"]
    assert {"allow_missing": {}} in requirements["requirements"]
    assert filters[1]["typed_config"]["rules"]["action"] == "DENY"
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["upstream"]
    assert hcm["typed_config"]["normalize_path"] is True  # the gateway's settings are kept


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


def test_run_smoke(tmp_path: Path) -> None:
    """bench/run.py end to end, as small as it goes: (b) from envoy-config and (d) with
    serve's defaults, a remembered token and a flood of new malformed ones, 1 s each. Every
    row must be marked ok (the expected answers, no errors); the numbers are not looked at."""
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--configs", "b-native,d", "--scenarios",
         "rs256-cached,malformed-fresh", "--duration", "1", "--pool-size", "200",
         "--json", str(results)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(results.read_text())
    rows = {(row["config"], row["scenario"]): row for row in report["rows"]}
    assert set(rows) >= {
        ("b-native", "rs256-cached"),
        ("b-native", "malformed-fresh"),
        ("d", "rs256-cached"),
        ("d", "malformed-fresh"),
    }
    assert all(row["is_as_expected"] for row in rows.values()), done.stdout
    assert rows[("d", "malformed-fresh")]["probe"] == "401"
    assert {(r["scenario"], r["denominator"]) for r in report["ratios"]} >= {
        ("rs256-cached", "b-native"),
        ("malformed-fresh", "b-native"),
    }


# -- A/B runs: (d) from another source tree -----------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


def test_python_m_imports_the_source_tree_it_is_launched_with(tmp_path: Path) -> None:
    """`source_tree_launch` starts the authorizer inside the tree: PYTHONPATH alone loses to
    the working directory, which `python -m` puts first (the control below shows it)."""
    tree = tmp_path / "tree"
    (tree / "extauthz").mkdir(parents=True)
    (tree / "extauthz" / "__init__.py").write_text("")
    (tree / "extauthz" / "__main__.py").write_text("print('the tree in', __file__)\n")
    launch = source_tree_launch(tree)

    def run(env: dict[str, str], cwd: Path) -> str:
        return subprocess.run([sys.executable, "-m", "extauthz", "--version"], env={**os.environ, **env},
                              cwd=cwd, capture_output=True, text=True, timeout=60).stdout  # fmt: skip

    assert f"the tree in {tree}" in run(launch["env"], launch["cwd"])
    assert "the tree" not in run(launch["env"], ROOT)  # started from the checkout: its package
    assert source_tree_launch(None) == {}


def test_run_measures_d_from_another_tree(tmp_path: Path) -> None:
    """bench/run.py --extauthz-tree: refused without a package, else (d) runs from the tree
    (a copy of this commit here) and the table says so."""
    refused = subprocess.run([sys.executable, "bench/run.py", "--extauthz-tree", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert refused.returncode == 2 and "no extauthz package" in refused.stderr
    tree = tmp_path / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "extauthz"],
                             capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=60)
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--configs", "d", "--scenarios", "rs256-cached",
         "--duration", "1", "--pool-size", "200", "--extauthz-tree", str(tree),
         "--json", str(results)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(results.read_text())
    assert f"from {tree}" in report["machine"]["extauthz"]
    assert all(row["is_as_expected"] for row in report["rows"]), done.stdout


def test_run_adds_a_burning_floor(tmp_path: Path) -> None:
    """bench/run.py --burn-us: the uvloop floor that spends N µs of CPU per Check runs the
    cached token beside the floor, and its ratio to the floor is reported (not looked at)."""
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--configs", "c-uvloop", "--scenarios", "rs256-cached",
         "--burn-us", "50", "--duration", "1", "--pool-size", "200", "--json", str(results)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(results.read_text())
    wrk = {row["config"]: row for row in report["rows"] if row["tool"] == "wrk"}
    assert set(wrk) == {"c-uvloop", "c-burn50"}
    assert all(row["is_as_expected"] for row in wrk.values()), done.stdout
    assert ("rs256-cached", "c-burn50", "c-uvloop") in {
        (r["scenario"], r["numerator"], r["denominator"]) for r in report["ratios"]
    }
    assert report["settings"]["burns_us"] == [50]

"""Rows, the one table, the ratios, the machine they ran on, and the JSON of all of it."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.loadgen import tool_version
from extauthz.rig.rig import find_binary

CPU_ROLES = ("envoy", "authorizer", "upstream", "loadgen", "other", "idle")


@dataclass(frozen=True, slots=True)
class Row:
    config: str  # configuration key: a-direct, b-native, c-uvloop, d, …
    config_label: str
    loop: str
    scenario: str  # scenario key, or "check-direct" for h2load
    scenario_label: str
    tool: str  # wrk | h2load
    rate: float  # requests (wrk) or Checks (h2load) per second
    p50_s: float | None
    p99_s: float | None
    mean_s: float | None
    requests: int
    expected: str  # "200", "403", "401", or "OK" (gRPC)
    probe: str  # what a single request got before the run
    non_2xx: int  # wrk's "Non-2xx or 3xx responses", or h2load requests without a 2xx
    status_5xx: int
    errors: int  # socket errors, ext_authz errors, h2load failed + errored
    is_as_expected: bool
    cpu_percent: dict[str, float] = field(default_factory=dict)  # role -> % of one core
    detail: dict[str, Any] = field(default_factory=dict)  # Envoy counters, raw numbers


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def authorizer_us_per_request(row: Row) -> float | None:
    """The authorizer's CPU time per request: what one Check really costs it, all threads."""
    percent = row.cpu_percent.get("authorizer")
    if percent is None or not row.rate:
        return None
    return percent / 100 / row.rate * 1e6


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _check_us(row: Row) -> str:
    """extauthz's mean wall time inside Check (its own histogram), in µs; "-" for others."""
    mean = row.detail.get("extauthz_mean_check_s")
    return "-" if mean is None else f"{mean * 1e6:.1f}"


def _cpu(row: Row) -> str:
    return "/".join(
        f"{row.cpu_percent[role]:.0f}" if role in row.cpu_percent else "-" for role in CPU_ROLES
    )


COLUMNS = (
    ("configuration", "<", 32),
    ("loop", "<", 7),
    ("scenario", "<", 21),
    ("tool", "<", 6),
    ("req/s", ">", 8),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("expect", ">", 6),
    ("probe", ">", 5),
    ("non-2xx", ">", 8),
    ("5xx", ">", 5),
    ("errors", ">", 6),
    ("check", "<", 8),
    ("A µs/req", ">", 8),
    ("Check µs", ">", 8),
    ("CPU% E/A/U/L/other/idle", "<", 24),
)


def _line(values: list[str]) -> str:
    cells = [f"{v:{align}{width}}" for v, (_, align, width) in zip(values, COLUMNS, strict=True)]
    return " ".join(cells).rstrip()


def format_table(rows: list[Row]) -> str:
    header = _line([name for name, _, _ in COLUMNS])
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            _line(
                [
                    row.config_label,
                    row.loop,
                    row.scenario_label,
                    row.tool,
                    f"{row.rate:,.0f}",
                    _ms(row.p50_s),
                    _ms(row.p99_s),
                    row.expected,
                    row.probe,
                    str(row.non_2xx),
                    str(row.status_5xx),
                    str(row.errors),
                    "ok" if row.is_as_expected else "MISMATCH",
                    _us(authorizer_us_per_request(row)),
                    _check_us(row),
                    _cpu(row),
                ]
            )
        )
    return "\n".join(lines)


NOISY_OTHER_PERCENT = 15.0


def noisy_rows(rows: list[Row]) -> list[Row]:
    """Rows measured while processes outside the benchmark took CPU time."""
    return [row for row in rows if row.cpu_percent.get("other", 0.0) > NOISY_OTHER_PERCENT]


# -- ratios -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ratio:
    scenario: str
    numerator: str  # configuration keys
    denominator: str
    rate: float | None  # numerator req/s / denominator req/s
    p99: float | None  # numerator p99 / denominator p99


def ratios(
    rows: list[Row], scenarios: tuple[str, ...], numerator: str, denominators: tuple[str, ...]
) -> list[Ratio]:
    by_key = {(row.config, row.scenario): row for row in rows if row.tool == "wrk"}
    found = []
    for scenario in scenarios:
        top = by_key.get((numerator, scenario))
        for denominator in denominators:
            bottom = by_key.get((denominator, scenario))
            if top is None or bottom is None:
                continue
            rate = top.rate / bottom.rate if bottom.rate else None
            p99 = top.p99_s / bottom.p99_s if top.p99_s and bottom.p99_s else None
            found.append(Ratio(scenario, numerator, denominator, rate, p99))
    return found


def format_ratios(found: list[Ratio], labels: dict[str, str]) -> str:
    if not found:
        return "(no ratios: a configuration or scenario they need did not run)"
    lines = [f"{'scenario':<16} {'ratio':<44} {'req/s':>7} {'p99':>7}"]
    for ratio in found:
        name = f"{labels[ratio.numerator]} / {labels[ratio.denominator]}"
        rate = "-" if ratio.rate is None else f"{ratio.rate:.2f}"
        p99 = "-" if ratio.p99 is None else f"{ratio.p99:.2f}"
        lines.append(f"{ratio.scenario:<16} {name:<44} {rate:>7} {p99:>7}")
    return "\n".join(lines)


# -- machine ----------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision(root: Path | None = None) -> str:
    """The commit of `root` (this checkout by default), and whether it has changes."""
    root = root or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain")
    except OSError:
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}" if head else "unknown"


def machine_info(extauthz_tree: Path | None = None) -> dict[str, str]:
    """The machine and the versions measured; with `extauthz_tree`, (d) ran from that tree."""
    extauthz = _git_revision()
    if extauthz_tree is not None:
        extauthz = f"{_git_revision(extauthz_tree)} from {extauthz_tree} (bench: {extauthz})"
    envoy = tool_version([find_binary("envoy"), "--version"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "envoy": envoy.rpartition("version: ")[2] or envoy,
        "wrk": tool_version(["wrk", "--version"]).split(" [")[0],
        "h2load": tool_version(["h2load", "--version"]),
        "grpcio": _package_version("grpcio"),
        "uvloop": _package_version("uvloop"),
        "extauthz": extauthz,
    }


def format_machine(info: dict[str, str]) -> str:
    return "\n".join(f"{name + ':':<10} {value}" for name, value in info.items())


# -- JSON ---------------------------------------------------------------------------------------
def to_json(
    machine: dict[str, str], settings: dict[str, Any], rows: list[Row], found: list[Ratio]
) -> str:
    return json.dumps(
        {
            "machine": machine,
            "settings": settings,
            "rows": [dataclasses.asdict(row) for row in rows],
            "ratios": [dataclasses.asdict(ratio) for ratio in found],
        },
        indent=2,
        default=str,
    )

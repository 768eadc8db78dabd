"""End-to-end benchmark: Envoy alone, Envoy's own JWT filters, Envoy -> an always-OK
ext_authz, Envoy -> extauthz; driven with wrk (HTTP through Envoy) and h2load (gRPC Check
straight to the authorizer). Everything runs on 127.0.0.1 and is stopped at the end.

    .venv/bin/python bench/run.py [--duration SECONDS] [--quick] [--json FILE]

Prints the machine, one table and the ratios; writes the same as JSON. Asserts nothing:
a run that got unexpected answers is marked MISMATCH in the table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# `python bench/run.py` puts bench/ first on sys.path; the modules live in package `bench`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen, report, scenarios
from bench.measure import measure_h2load, measure_wrk, warm_up
from bench.report import Row
from bench.scenarios import Material
from bench.stack import Configuration, Stack, extauthz_loop
from bench.tokens import demo_token

CORES = os.cpu_count() or 1


def configurations() -> list[Configuration]:
    return [
        Configuration("a-direct", "(a) Envoy, direct_response", "none", has_upstream=False),
        Configuration("a-upstream", "(a) Envoy -> upstream", "none"),
        Configuration("b-native", "(b) Envoy jwt_authn + rbac", "jwt_authn"),
        Configuration("c-asyncio", "(c) Envoy -> always-OK ext_authz", "always_ok", "asyncio"),
        Configuration("c-uvloop", "(c) Envoy -> always-OK ext_authz", "always_ok", "uvloop"),
        Configuration("d", "(d) Envoy -> extauthz", "extauthz", extauthz_loop()),
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_configuration(
    configuration: Configuration,
    material: Material,
    workdir: Path,
    duration_s: float,
    warm_up_s: float,
    upstream: str,
    rows: list[Row],
    decision_log: str = "none",
) -> None:
    """Measure every scenario of one configuration; rows are appended as they are made, so
    an interrupted run still reports what it finished."""
    chosen: tuple[scenarios.Scenario, ...] = material.scenarios
    if configuration.authorizer == "none":
        # No auth: the token is ignored; send the cached one so the requests weigh the same.
        chosen = (scenarios.Scenario("no-auth", "no auth (token sent)", 200, token=demo_token()),)
    _progress(f"== {configuration.label} [{configuration.loop}]")
    stack = Stack(configuration, workdir, material.jwks, material.policies, upstream, decision_log)
    with stack:
        warm_up(stack, demo_token(), warm_up_s)
        for scenario in chosen:
            row = measure_wrk(stack, scenario, duration_s)
            rows.append(row)
            _progress(f"   {scenario.label:<22} {row.rate:>9,.0f} req/s  {_verdict(row)}")
        if configuration.has_grpc_authorizer:
            row = measure_h2load(stack, workdir, demo_token(), duration_s)
            rows.append(row)
            _progress(f"   {row.scenario_label:<22} {row.rate:>9,.0f} Check/s  {_verdict(row)}")


def _verdict(row: Row) -> str:
    p99 = "-" if row.p99_s is None else f"{row.p99_s * 1e3:.2f} ms"
    return f"p99 {p99}  {'ok' if row.is_as_expected else 'MISMATCH'}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="seconds per run (default 10, quick 3)")
    parser.add_argument(
        "--quick", action="store_true", help="short runs, fewer scenarios (under 2 minutes)"
    )
    parser.add_argument("--json", type=Path, help="write results here (default: in the workdir)")
    parser.add_argument(
        "--upstream",
        choices=["fast", "productpage"],
        default="fast",
        help="bench/upstream.py (default) or the rig's aiohttp productpage",
    )
    parser.add_argument(
        "--decision-log",
        choices=["none", "denials", "all"],
        default="none",
        help="extauthz's --decision-log for (d) (default none; serve's own default is all)",
    )
    return parser


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # configuration key -> why
    interrupted: bool = False


def measure_all(
    material: Material,
    workdir: Path,
    duration_s: float,
    warm_up_s: float,
    upstream: str,
    decision_log: str = "none",
) -> Outcome:
    """Every configuration in turn. One that cannot start is reported and skipped; Ctrl-C
    or SIGTERM ends the run with what finished (processes are stopped on the way out)."""
    outcome = Outcome()
    try:
        for configuration in configurations():
            try:
                run_configuration(
                    configuration, material, workdir, duration_s, warm_up_s, upstream,
                    outcome.rows, decision_log,
                )  # fmt: skip
            except (RuntimeError, OSError, ValueError) as exc:
                outcome.failures[configuration.key] = f"{type(exc).__name__}: {exc}"
                _progress(f"   FAILED: {exc}")
    except KeyboardInterrupt:
        outcome.interrupted = True
        _progress("interrupted: every process is stopped; reporting what finished")
    return outcome


def print_report(
    outcome: Outcome, duration_s: float, upstream: str, decision_log: str = "none"
) -> list[report.Ratio]:
    labels = {c.key: f"{c.label.split()[0]} {c.loop}".replace(" -", "") for c in configurations()}
    found = report.ratios(
        outcome.rows, ("rs256-cached", "rs256-fresh"), "d", ("c-asyncio", "c-uvloop", "b-native")
    )
    print(
        f"\nwrk -t1 -c50 -d{duration_s:g}s through Envoy (--concurrency 1) to {scenarios.PATH}; "
        f"h2load -c 4 -m 50 straight to the authorizer; upstream: {upstream}; "
        f"extauthz --decision-log {decision_log}"
    )
    print(
        "CPU%: Envoy / authorizer / upstream / load generator / everything else / idle,"
        f" in % of one core over the run ({CORES} cores: they add up to about {100 * CORES});"
        " A µs/req: the authorizer's CPU time per request\n"
    )
    print(report.format_table(outcome.rows))
    noisy = report.noisy_rows(outcome.rows)
    if noisy:
        print(
            f"\n{len(noisy)} row(s) ran while something else used over "
            f"{report.NOISY_OTHER_PERCENT:.0f}% of a core (column 'other'): "
            "numbers disturbed, rerun on a quiet machine"
        )
    for key, why in outcome.failures.items():
        print(f"\nconfiguration {key} did not run: {why}")
    print("\nRatios, (d) extauthz over the others (req/s: higher is better; p99: lower is):")
    print(report.format_ratios(found, labels))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    # SIGTERM, and SIGINT even when a shell started us in the background (which ignores
    # it), stop the run cleanly: every process is stopped by its context manager.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    duration_s = args.duration or (3.0 if args.quick else 10.0)
    warm_up_s = 1.0 if args.quick else 2.0
    keys = scenarios.QUICK_SCENARIOS if args.quick else scenarios.ALL_SCENARIOS
    loadgen.ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="extauthz-bench-"))
    machine = report.machine_info()
    print(report.format_machine(machine), flush=True)
    _progress(f"work directory (configs, logs, JSON): {workdir}\nminting tokens ...")
    try:
        material = scenarios.prepare(workdir, keys)
    except KeyboardInterrupt:
        _progress("interrupted while minting tokens; nothing was started")
        return 130
    try:
        outcome = measure_all(
            material, workdir, duration_s, warm_up_s, args.upstream, args.decision_log
        )
    finally:
        for pool in material.pool_files:
            pool.unlink(missing_ok=True)
    found = print_report(outcome, duration_s, args.upstream, args.decision_log)
    settings = {
        "duration_s": duration_s,
        "warm_up_s": warm_up_s,
        "quick": args.quick,
        "upstream": args.upstream,
        "decision_log": args.decision_log,
        "scenarios": list(keys),
        "workdir": str(workdir),
        "interrupted": outcome.interrupted,
        "failures": outcome.failures,
    }
    json_path = args.json or workdir / "results.json"
    json_path.write_text(report.to_json(machine, settings, outcome.rows, found))
    print(f"\nJSON: {json_path}")
    return 130 if outcome.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

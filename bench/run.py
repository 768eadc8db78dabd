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
from dataclasses import dataclass, field, replace
from pathlib import Path

# `python bench/run.py` puts bench/ first on sys.path; the modules live in package `bench`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen, report, scenarios, tokens
from bench.always_ok import MAX_BURN_US
from bench.measure import measure_h2load, measure_wrk, warm_up
from bench.report import Row
from bench.scenarios import Material
from bench.stack import Configuration, Stack, extauthz_loop
from bench.tokens import demo_token

CORES = os.cpu_count() or 1


LOG_MODES = ("none", "denials", "all")
# What each extra decision-log configuration runs: an allow and a denial, both remembered.
LOG_MODE_SCENARIOS = ("rs256-cached", "no-token")


# What each burning floor runs: the cached token, the request extauthz answers from memory.
BURN_SCENARIOS = ("rs256-cached",)


def configurations(
    log_modes: tuple[str, ...] = (), burns_us: tuple[int, ...] = ()
) -> list[Configuration]:
    """(d) runs with serve's defaults; each of `log_modes` adds (d) with that --decision-log
    for LOG_MODE_SCENARIOS; each of `burns_us` adds the uvloop floor spending that many CPU
    microseconds in each Check (c-burnN), for BURN_SCENARIOS."""
    loop = extauthz_loop()
    return [
        Configuration("a-direct", "(a) Envoy, direct_response", "none", has_upstream=False),
        Configuration("a-upstream", "(a) Envoy -> upstream", "none"),
        Configuration("b-native", "(b) Envoy jwt_authn + rbac", "jwt_authn"),
        Configuration("c-asyncio", "(c) Envoy -> always-OK ext_authz", "always_ok", "asyncio"),
        Configuration("c-uvloop", "(c) Envoy -> always-OK ext_authz", "always_ok", "uvloop"),
        Configuration("d", "(d) Envoy -> extauthz (defaults)", "extauthz", loop),
        *(
            Configuration(
                f"d-log-{mode}",
                f"(d) extauthz --decision-log {mode}",
                "extauthz",
                loop,
                decision_log=mode,
                only=LOG_MODE_SCENARIOS,
            )
            for mode in log_modes
        ),
        *(
            Configuration(
                f"c-burn{us}",
                f"(c) always-OK, {us} us CPU per Check",
                "always_ok",
                "uvloop",
                only=BURN_SCENARIOS,
                burn_us=us,
            )
            for us in burns_us
        ),
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
) -> None:
    """Measure every scenario of one configuration; rows are appended as they are made, so
    an interrupted run still reports what it finished."""
    chosen: tuple[scenarios.Scenario, ...] = material.scenarios
    if configuration.only:
        chosen = tuple(s for s in chosen if s.key in configuration.only)
    if configuration.authorizer == "none":
        # No auth: the token is ignored; send the cached one so the requests weigh the same.
        chosen = (scenarios.Scenario("no-auth", "no auth (token sent)", 200, token=demo_token()),)
    _progress(f"== {configuration.label} [{configuration.loop}]")
    stack = Stack(configuration, workdir, material.jwks, material.policies, upstream)
    with stack:
        warm_up(stack, demo_token(), warm_up_s)
        for scenario in chosen:
            row = measure_wrk(stack, scenario, duration_s)
            rows.append(row)
            _progress(f"   {scenario.label:<22} {row.rate:>9,.0f} req/s  {_verdict(row)}")
        if configuration.has_grpc_authorizer and not configuration.burn_us:
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
        "--log-modes",
        default="",
        metavar="MODE[,MODE]",
        help="also run (d) with each of these --decision-log modes (none, denials, all) for "
        "the cached token and no token; (d) itself runs with serve's defaults",
    )
    parser.add_argument(
        "--burn-us",
        default="",
        metavar="US[,US]",
        help="also run the uvloop floor spending each of these CPU microseconds in every Check "
        "(c-burnUS), for the cached token: what a Check of that cost does to req/s, beside "
        "(d) and its mean Check time",
    )
    parser.add_argument(
        "--configs", default="", metavar="KEY[,KEY]", help="only these configurations"
    )
    parser.add_argument("--scenarios", default="", metavar="KEY[,KEY]", help="only these scenarios")
    parser.add_argument(
        "--extauthz-tree",
        type=Path,
        metavar="DIR",
        help="run (d) from this source tree instead of the installed extauthz (a git worktree "
        "of another commit, for A/B runs; the table names its commit)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=tokens.FRESH_POOL_SIZE,
        help="tokens per fresh pool (default 20,000: twice extauthz's token cache)",
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
    chosen: list[Configuration],
) -> Outcome:
    """Every configuration in turn. One that cannot start is reported and skipped; Ctrl-C
    or SIGTERM ends the run with what finished (processes are stopped on the way out)."""
    outcome = Outcome()
    try:
        for configuration in chosen:
            try:
                run_configuration(
                    configuration, material, workdir, duration_s, warm_up_s, upstream,
                    outcome.rows,
                )  # fmt: skip
            except (RuntimeError, OSError, ValueError) as exc:
                outcome.failures[configuration.key] = f"{type(exc).__name__}: {exc}"
                _progress(f"   FAILED: {exc}")
    except KeyboardInterrupt:
        outcome.interrupted = True
        _progress("interrupted: every process is stopped; reporting what finished")
    return outcome


def print_report(
    outcome: Outcome, duration_s: float, upstream: str, chosen: list[Configuration]
) -> list[report.Ratio]:
    labels = {c.key: f"{c.label.split()[0]} {c.loop}".replace(" -", "") for c in chosen}
    labels.update({c.key: c.key for c in chosen if c.decision_log != "default" or c.burn_us})
    floors = ("c-asyncio", "c-uvloop", "b-native")
    found = report.ratios(outcome.rows, scenarios.ALL_SCENARIOS, "d", floors)
    for configuration in chosen:
        if configuration.decision_log != "default":
            found += report.ratios(outcome.rows, LOG_MODE_SCENARIOS, configuration.key, floors)
        if configuration.burn_us:
            found += report.ratios(outcome.rows, BURN_SCENARIOS, configuration.key, ("c-uvloop",))
    print(
        f"\nwrk -t1 -c50 -d{duration_s:g}s through Envoy (--concurrency 1) to {scenarios.PATH}; "
        f"h2load -c 4 -m 50 straight to the authorizer; upstream: {upstream}; "
        "(d) is extauthz serve with its defaults"
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
    print(
        "\nRatios, (d) extauthz (and each burning floor) over the others"
        " (req/s: higher is better; p99: lower is):"
    )
    print(report.format_ratios(found, labels))
    return found


def _listed(
    parser: argparse.ArgumentParser, text: str, known: tuple[str, ...], flag: str
) -> list[str]:
    listed = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in listed if item not in known]
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return listed


def _burns(parser: argparse.ArgumentParser, text: str) -> tuple[int, ...]:
    burns = []
    for item in (item.strip() for item in text.split(",")):
        if not item:
            continue
        if not item.isdigit() or not 0 < int(item) <= MAX_BURN_US:
            parser.error(f"--burn-us: {item!r} is not a whole number from 1 to {MAX_BURN_US:g}")
        burns.append(int(item))
    return tuple(dict.fromkeys(burns))


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
    if args.scenarios:
        keys = tuple(_listed(parser, args.scenarios, scenarios.ALL_SCENARIOS, "--scenarios"))
    log_modes = tuple(_listed(parser, args.log_modes, LOG_MODES, "--log-modes"))
    burns_us = _burns(parser, args.burn_us)
    chosen = configurations(log_modes, burns_us)
    if args.configs:
        known = [c.key for c in chosen]
        wanted = _listed(parser, args.configs, tuple(known), "--configs")
        chosen = [c for c in chosen if c.key in wanted or c.burn_us]  # --burn-us adds its own
    tree = args.extauthz_tree.resolve() if args.extauthz_tree else None
    if tree is not None:
        if not (tree / "extauthz" / "__init__.py").is_file():
            parser.error(f"--extauthz-tree {args.extauthz_tree}: no extauthz package in it")
        chosen = [
            replace(c, extauthz_tree=tree) if c.authorizer == "extauthz" else c for c in chosen
        ]
    loadgen.ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="extauthz-bench-"))
    machine = report.machine_info(tree)
    print(report.format_machine(machine), flush=True)
    _progress(f"work directory (configs, logs, JSON): {workdir}\nminting tokens ...")
    try:
        material = scenarios.prepare(workdir, keys, args.pool_size)
    except KeyboardInterrupt:
        _progress("interrupted while minting tokens; nothing was started")
        return 130
    try:
        outcome = measure_all(material, workdir, duration_s, warm_up_s, args.upstream, chosen)
    finally:
        for pool in material.pool_files:
            pool.unlink(missing_ok=True)
    found = print_report(outcome, duration_s, args.upstream, chosen)
    settings = {
        "duration_s": duration_s,
        "warm_up_s": warm_up_s,
        "quick": args.quick,
        "upstream": args.upstream,
        "log_modes": list(log_modes),
        "burns_us": list(burns_us),
        "configurations": [c.key for c in chosen],
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

"""Memory under a long run of fresh tokens: does extauthz's RSS stay flat once its caches
are full? Envoy -> extauthz (configuration (d) of run.py), wrk sending the next token of a
pool of 20,000 (twice the verified-token cache) on every request, and the policy file
rewritten every 30 s, so a new configuration generation is loaded and the old one (with
its remembered answers) must be let go.

    .venv/bin/python bench/soak.py [--minutes 10] [--interval 10] [--warm-up 30]
                                   [--reload-every 30] [--scenario rs256-fresh]

`--scenario` picks the pool: `rs256-fresh` (the default: new valid tokens fill the verified
token cache and the remembered answers), `es256-fresh`, or a flood of 401s, `malformed-fresh`
and `badsig-fresh` (the rejection caches and the failed-signature cache).

Prints one line per sample (time, RSS, change since the first sample after warm-up, Checks
answered) and a summary. A benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen, scenarios
from bench.scenarios import PATH
from bench.stack import Configuration, Stack, extauthz_loop

# The pools a soak can send: a new token on every request, valid or not.
SOAK_SCENARIOS = ("rs256-fresh", "es256-fresh", "malformed-fresh", "badsig-fresh")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (VmRSS, in kB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def change_percent(first: int, now: int) -> float:
    return (now - first) / first * 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="measured time (default 10)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument(
        "--reload-every", type=float, default=30.0, help="seconds between policy rewrites (0: none)"
    )
    parser.add_argument(
        "--scenario",
        choices=SOAK_SCENARIOS,
        default="rs256-fresh",
        help="the pool of tokens, one per request (default rs256-fresh)",
    )
    args = parser.parse_args(argv)
    loadgen.ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="extauthz-soak-"))
    material = scenarios.prepare(workdir, (args.scenario,))
    fresh = material.scenario(args.scenario)
    assert fresh.token_file is not None
    configuration = Configuration("d", "(d) Envoy -> extauthz", "extauthz", extauthz_loop())
    with Stack(configuration, workdir, material.jwks, material.policies) as stack:
        pid = stack.processes["authorizer"].pid
        assert pid is not None
        total_s = args.warm_up + args.minutes * 60
        wrk = subprocess.Popen(
            loadgen.wrk_command(stack.url(PATH), total_s + 5, token_file=fresh.token_file),
            stdout=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        time.sleep(args.warm_up)
        checks_before = _checks(stack)
        first = rss_bytes(pid)
        samples = [first]
        print(f"{'s':>6} {'RSS MB':>8} {'change':>8} {'Checks':>10}", flush=True)
        print(f"{0:>6.0f} {first / 1e6:>8.1f} {0:>+7.1f}% {0:>10,}", flush=True)
        policy_text = material.policies.read_text()
        reloads, next_reload = 0, time.monotonic() + args.reload_every
        while time.monotonic() - started < total_s:
            time.sleep(min(args.interval, max(0.0, total_s - (time.monotonic() - started))))
            if args.reload_every > 0 and time.monotonic() >= next_reload:
                reloads += 1  # a changed file is a new generation (serve watches it)
                material.policies.write_text(f"{policy_text}\n# soak reload {reloads}\n")
                next_reload += args.reload_every
            now = rss_bytes(pid)
            samples.append(now)
            elapsed = time.monotonic() - started - args.warm_up
            checks = _checks(stack) - checks_before
            line = f"{elapsed:>6.0f} {now / 1e6:>8.1f} {change_percent(first, now):>+7.1f}%"
            print(f"{line} {checks:>10,} generation {_generation(stack)}", flush=True)
        wrk.terminate()
        wrk.wait(30)
        end, highest = samples[-1], max(samples)
        print(
            f"RSS after warm-up {first / 1e6:.1f} MB, at the end {end / 1e6:.1f} MB "
            f"({change_percent(first, end):+.1f} %), highest {highest / 1e6:.1f} MB "
            f"({change_percent(first, highest):+.1f} %), over {_checks(stack) - checks_before:,} "
            f"Checks with a new token each ({fresh.label}, {fresh.expected}), {reloads} policy "
            f"rewrites (generation "
            f"{_generation(stack)} at the end)"
        )
    return 0


def _generation(stack: Stack) -> int:
    """The configuration generation extauthz serves (its /readyz)."""
    url = f"http://127.0.0.1:{stack.http_port}/readyz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(json.load(response)["generation"])


def _checks(stack: Stack) -> int:
    """Checks extauthz answered so far (its own extauthz_check_duration_seconds_count)."""
    totals = stack.check_duration_totals()
    return totals[1] if totals is not None else 0


if __name__ == "__main__":
    sys.exit(main())

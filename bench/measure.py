"""One measurement = probe the answer, run the load generator, read what Envoy and the
processes saw, return a Row. Nothing here asserts: a wrong answer is a row marked
MISMATCH, so a misconfigured run is visible rather than fatal."""

from __future__ import annotations

import resource
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import check_body, loadgen
from bench.report import Row
from bench.scenarios import PATH, Scenario
from bench.stack import CLOCK_TICKS, Stack

GRPC_FRAME_HEADER_BYTES = 5


def http_status(url: str, token: str) -> int | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _children_cpu_seconds() -> float:
    # Load generators are our children and have exited when a run ends: their CPU time
    # is what RUSAGE_CHILDREN grew by.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far, all cores, from /proc/stat.
    Steal (time the hypervisor gave to someone else) counts as neither."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, (idle + iowait) / CLOCK_TICKS


class CpuMeter:
    """CPU time over one run of every stack process, of the load generator, of everything
    else on the machine ("other": other people's work, our own parent process) and the
    idle time left — in % of one core, so on 2 cores they add up to about 200."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._processes = stack.cpu_seconds()
        self._children = _children_cpu_seconds()
        self._machine = machine_cpu_seconds()
        self._started = time.monotonic()

    def percent(self) -> dict[str, float]:
        wall = time.monotonic() - self._started
        now = self._stack.cpu_seconds()
        busy, idle = machine_cpu_seconds()
        used = {role: now[role] - self._processes.get(role, 0.0) for role in now}
        used["loadgen"] = _children_cpu_seconds() - self._children
        used["other"] = max(0.0, busy - self._machine[0] - sum(used.values()))
        used["idle"] = idle - self._machine[1]
        return {role: 100 * seconds / wall for role, seconds in used.items()}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: value - before.get(name, 0) for name, value in after.items()}


def warm_up(stack: Stack, token: str, seconds: float) -> None:
    """Open connections and fill caches (Envoy's pools, extauthz's token cache) before
    anything is measured; the result is thrown away."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    loadgen.run_wrk(stack.url(PATH), seconds, headers=headers)


def measure_wrk(stack: Stack, scenario: Scenario, duration_s: float) -> Row:
    configuration = stack.configuration
    expected = scenario.expected if configuration.enforces_policy else 200
    url = stack.url(PATH)
    probe = http_status(url, scenario.checked_token)
    headers = {"Authorization": f"Bearer {scenario.token}"} if scenario.token else {}
    before = stack.envoy_counters()
    checks_before = stack.check_duration_totals()
    meter = CpuMeter(stack)
    result = loadgen.run_wrk(url, duration_s, headers=headers, token_file=scenario.token_file)
    cpu = meter.percent()
    counters = _diff(stack.envoy_counters(), before)
    in_check = _mean_check_s(checks_before, stack.check_duration_totals())
    answered = {f"{c}xx": counters.get(f"downstream_rq_{c}xx", 0) for c in "2345"}
    errors = sum(result.socket_errors.values()) + counters.get("ext_authz.error", 0)
    expected_class = f"{expected // 100}xx"
    total = sum(answered.values())
    is_as_expected = (
        probe == expected
        and answered[expected_class] == total
        and errors == 0
        and (result.non_2xx_3xx == 0) == (expected < 300)
    )
    return Row(
        config=configuration.key,
        config_label=configuration.label,
        loop=configuration.loop,
        scenario=scenario.key,
        scenario_label=scenario.label,
        tool="wrk",
        rate=result.requests_per_s,
        p50_s=result.p50_s,
        p99_s=result.p99_s,
        mean_s=result.latency_mean_s,
        requests=result.requests,
        expected=str(expected),
        probe=str(probe),
        non_2xx=result.non_2xx_3xx,
        status_5xx=answered["5xx"],
        errors=errors,
        is_as_expected=is_as_expected,
        cpu_percent=cpu,
        detail={
            "envoy_counters": counters,
            "answered": answered,
            "socket_errors": result.socket_errors,
            "percentiles_s": result.percentiles_s,
            "duration_s": result.duration_s,
            "extauthz_mean_check_s": in_check,
        },
    )


def _mean_check_s(
    before: tuple[float, int] | None, after: tuple[float, int] | None
) -> float | None:
    """Mean time extauthz measured inside Check over one run (its Prometheus histogram)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def measure_h2load(stack: Stack, workdir: Path, token: str, duration_s: float) -> Row:
    """Checks sent straight to the authorizer's gRPC port, bypassing Envoy."""
    configuration = stack.configuration
    request = check_body.check_request(token, PATH, f"127.0.0.1:{stack.listener}")
    body_file = workdir / "check-body.bin"
    body_file.write_bytes(check_body.check_body(request))
    probes = check_body.probe(stack.grpc_port, request)
    is_allowed = all(p.is_allowed for p in probes)
    probe = "OK" if is_allowed else next(p for p in probes if not p.is_allowed).grpc_code
    url = f"http://127.0.0.1:{stack.grpc_port}{check_body.CHECK_METHOD}"
    # A short run first: it warms the server up and tells how many requests fill the
    # duration (h2load's -n, so every run sends a known number).
    calibration = loadgen.run_h2load(url, body_file, 2000)
    count = max(2000, int(calibration.requests_per_s * duration_s))
    checks_before = stack.check_duration_totals()
    meter = CpuMeter(stack)
    result = loadgen.run_h2load(url, body_file, count)
    cpu = {role: pct for role, pct in meter.percent().items() if role != "envoy"}
    in_check = _mean_check_s(checks_before, stack.check_duration_totals())
    answered_2xx = result.status_counts.get("2xx", 0)
    errors = result.failed + result.errored
    # Every answered Check carries a gRPC message (5 bytes of framing and more); one that
    # failed with a gRPC status (still HTTP 200) carries none.
    has_messages = result.data_bytes > GRPC_FRAME_HEADER_BYTES * answered_2xx
    return Row(
        config=configuration.key,
        config_label=configuration.label,
        loop=configuration.loop,
        scenario="check-direct",
        scenario_label="direct Check (h2load)",
        tool="h2load",
        rate=result.requests_per_s,
        p50_s=result.percentiles_s.get(50),
        p99_s=result.percentiles_s.get(99),
        mean_s=result.latency_mean_s,
        requests=result.requests,
        expected="OK",
        probe=probe,
        non_2xx=result.requests - answered_2xx,
        status_5xx=result.status_counts.get("5xx", 0),
        errors=errors,
        is_as_expected=(
            is_allowed and has_messages and errors == 0 and answered_2xx == result.requests
        ),
        cpu_percent=cpu,
        detail={
            "status_counts": result.status_counts,
            "data_bytes": result.data_bytes,
            "percentiles_s": result.percentiles_s,
            "duration_s": result.duration_s,
            "probes": [p.grpc_code for p in probes],
            "extauthz_mean_check_s": in_check,
        },
    )

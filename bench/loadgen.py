"""wrk and h2load: installing them, running them (killed with us), parsing what they print.

Parsers take the tools' text output and return plain values in seconds and requests per
second; they are tested against output captured from real runs (tests/unit/test_bench.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

WRK_LUA = Path(__file__).resolve().parent / "wrk_tokens.lua"
APT_PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client"}

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"([\d.]+)"
_TIME = _NUMBER + r"(us|ms|s|m|h)\b"


class ToolError(RuntimeError):
    pass


# -- installing -------------------------------------------------------------------------------
def missing_tools() -> list[str]:
    return [tool for tool in APT_PACKAGES if shutil.which(tool) is None]


def ensure_tools() -> None:
    """Install wrk and h2load with apt-get when they are missing and we are root; otherwise
    say how to get them."""
    missing = missing_tools()
    if not missing:
        return
    packages = sorted({APT_PACKAGES[tool] for tool in missing})
    hint = f"install them with: apt-get install -y {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ToolError(f"missing {', '.join(missing)}; {hint}")
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    install = ["apt-get", "install", "-y", "-q", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    if missing_tools():
        raise ToolError(f"could not install {', '.join(missing_tools())}; {hint}")


def tool_version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


# -- running ------------------------------------------------------------------------------------
def run_tool(argv: Sequence[str], timeout: float) -> str:
    """Run a load generator in its own process group and return its stdout; it is killed
    if we are interrupted (Ctrl-C, SIGTERM) or it overruns."""
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    if process.returncode != 0:
        raise ToolError(f"{argv[0]} exited {process.returncode}: {(stderr or stdout)[-1000:]}")
    return stdout


# -- wrk ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    latency_mean_s: float
    percentiles_s: dict[int, float]  # 50, 75, 90, 99 -> seconds
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout

    @property
    def p50_s(self) -> float:
        return self.percentiles_s[50]

    @property
    def p99_s(self) -> float:
        return self.percentiles_s[99]


def _seconds(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse `wrk --latency` output (wrk 4.x)."""
    totals = re.search(r"(\d+) requests in " + _TIME, text)
    rate = re.search(r"Requests/sec:\s+" + _NUMBER, text)
    mean = re.search(r"^\s+Latency\s+" + _TIME, text, re.MULTILINE)
    if totals is None or rate is None or mean is None:
        raise ValueError(f"not wrk --latency output:\n{text[-1000:]}")
    percentiles = {
        int(float(m.group(1))): _seconds(m.group(2), m.group(3))
        for m in re.finditer(r"^\s+([\d.]+)%\s+" + _TIME, text, re.MULTILINE)
    }
    if 50 not in percentiles or 99 not in percentiles:
        raise ValueError(f"no latency distribution in wrk output (use --latency):\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )
    return WrkResult(
        requests=int(totals.group(1)),
        duration_s=_seconds(totals.group(2), totals.group(3)),
        requests_per_s=float(rate.group(1)),
        latency_mean_s=_seconds(mean.group(1), mean.group(2)),
        percentiles_s=percentiles,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def wrk_command(
    url: str,
    duration_s: float,
    connections: int = 50,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    token_file: Path | None = None,
) -> list[str]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if token_file is not None:
        argv += ["-s", str(WRK_LUA)]
    argv.append(url)
    if token_file is not None:
        argv += ["--", str(token_file)]
    return argv


def run_wrk(
    url: str,
    duration_s: float,
    headers: dict[str, str] | None = None,
    token_file: Path | None = None,
) -> WrkResult:
    argv = wrk_command(url, duration_s, headers=headers, token_file=token_file)
    return parse_wrk(run_tool(argv, timeout=duration_s + 60))


# -- h2load ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class H2loadResult:
    requests: int
    succeeded: int
    failed: int
    errored: int
    status_counts: dict[str, int]  # "2xx" .. "5xx"
    data_bytes: int  # response DATA: a gRPC call that failed in its trailers sends none
    duration_s: float
    requests_per_s: float
    latency_mean_s: float | None
    percentiles_s: dict[int, float]  # from --log-file; empty when there is no log


def parse_h2load(text: str) -> H2loadResult:
    """Parse h2load's summary (nghttp2 1.4x/1.5x)."""
    finished = re.search(r"finished in " + _TIME + r", " + _NUMBER + r" req/s", text)
    counts = re.search(
        r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored",
        text,
    )
    if finished is None or counts is None:
        raise ValueError(f"not h2load output:\n{text[-1000:]}")
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    status_counts = (
        dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, status.groups()), strict=True))
        if status
        else {}
    )
    data = re.search(r"\((\d+)\) data", text)
    # columns: min max mean sd +/- sd
    request_time = re.search(r"time for request:\s+\S+\s+\S+\s+" + _TIME, text)
    return H2loadResult(
        requests=int(counts.group(1)),
        succeeded=int(counts.group(2)),
        failed=int(counts.group(3)),
        errored=int(counts.group(4)),
        status_counts=status_counts,
        data_bytes=int(data.group(1)) if data else 0,
        duration_s=_seconds(finished.group(1), finished.group(2)),
        requests_per_s=float(finished.group(3)),
        latency_mean_s=(
            _seconds(request_time.group(1), request_time.group(2)) if request_time else None
        ),
        percentiles_s={},
    )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, -(-len(sorted_values) * fraction // 1))  # ceil without float surprises
    return sorted_values[int(rank) - 1]


def parse_h2load_log(text: str) -> dict[int, float]:
    """p50/p90/p99 (seconds) from an h2load --log-file: start µs, status, duration µs."""
    durations = sorted(
        int(columns[2]) / 1e6
        for line in text.splitlines()
        if len(columns := line.split("\t")) >= 3 and columns[2].strip().isdigit()
    )
    if not durations:
        return {}
    return {p: percentile(durations, p / 100) for p in (50, 90, 99)}


def h2load_command(
    url: str,
    body_file: Path,
    requests: int,
    clients: int = 4,
    streams: int = 50,
    log_file: Path | None = None,
) -> list[str]:
    argv = ["h2load", "-c", str(clients), "-m", str(streams), "-n", str(requests)]
    argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    argv += ["-d", str(body_file)]
    if log_file is not None:
        argv += ["--log-file", str(log_file)]
    argv.append(url)
    return argv


def run_h2load(url: str, body_file: Path, requests: int) -> H2loadResult:
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as directory:
        log_file = Path(directory) / "requests.tsv"
        argv = h2load_command(url, body_file, requests, log_file=log_file)
        result = parse_h2load(run_tool(argv, timeout=600))
        log = log_file.read_text() if log_file.exists() else ""
    return dataclasses.replace(result, percentiles_s=parse_h2load_log(log))

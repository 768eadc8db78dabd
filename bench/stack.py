"""One configuration's processes on loopback: upstream, authorizer, Envoy. Started on free
ports, polled until ready, always stopped (a context manager, like the rig)."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from bench import configs
from extauthz.rig.processes import Process, ProcessGroup, answers_200, free_port
from extauthz.rig.rig import find_binary

BENCH_DIR = Path(__file__).resolve().parent
STAT_PREFIX = "http.gateway."  # envoy/gateway.yaml's stat_prefix: the listener's counters
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Configuration:
    key: str  # stable id in the JSON: a-direct, a-upstream, b-native, c-asyncio, c-uvloop, d
    label: str  # what the table shows
    authorizer: str  # none | jwt_authn | always_ok | extauthz
    loop: str = "-"  # the authorizer's event loop
    has_upstream: bool = True
    decision_log: str = "default"  # extauthz's --decision-log ("default": serve's own)
    only: tuple[str, ...] = ()  # the scenarios it runs (all when empty)
    # extauthz from this source tree instead of the installed one (A/B runs of two commits)
    extauthz_tree: Path | None = None
    burn_us: int = 0  # always_ok: CPU microseconds spent in each Check (bench/always_ok.py)

    @property
    def enforces_policy(self) -> bool:
        """Do answers depend on the token (else everything is a 200)?"""
        return self.authorizer in ("jwt_authn", "extauthz")

    @property
    def has_grpc_authorizer(self) -> bool:
        return self.authorizer in ("always_ok", "extauthz")


def extauthz_loop() -> str:
    """Which loop `extauthz serve` runs on: it picks uvloop itself when the package has
    `run_event_loop` and uvloop imports (the benchmark cannot choose for it)."""
    try:
        import uvloop  # noqa: F401

        from extauthz.server import app
    except ImportError:
        return "asyncio"
    return "uvloop" if hasattr(app, "run_event_loop") else "asyncio"


def accepts_tcp(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class TreeLaunch(TypedDict, total=False):
    env: dict[str, str]
    cwd: Path


def source_tree_launch(tree: Path | None) -> TreeLaunch:
    """How to start `python -m extauthz` so that it imports `tree`'s package (a `git worktree`
    of another commit, say): from inside the tree, and with the tree on PYTHONPATH. `-m` puts
    the working directory first on sys.path, before PYTHONPATH, so a run started from a
    checkout would import the checkout's package whatever PYTHONPATH says."""
    if tree is None:
        return {}
    return {"env": {"PYTHONPATH": str(tree)}, "cwd": tree}


class BenchProcess(Process):
    """The rig's Process, plus its pid (to read its CPU time)."""

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None


class Stack(ProcessGroup):
    """Upstream -> authorizer -> Envoy for one configuration."""

    def __init__(
        self,
        configuration: Configuration,
        workdir: Path,
        jwks: str,
        policies: Path,
        upstream: str = "fast",  # fast (bench/upstream.py) | productpage (the rig's)
    ) -> None:
        self.decision_log = configuration.decision_log
        self.configuration = configuration
        self.workdir = workdir
        self.jwks = jwks
        self.policies = policies
        self.upstream_kind = upstream
        self.listener, self.admin, self.upstream_port, self.grpc_port, self.http_port = (
            self._pick_ports(5)
        )
        self.processes: dict[str, BenchProcess] = {}

    @staticmethod
    def _pick_ports(count: int) -> list[int]:
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port not in ports:
                ports.append(port)
        return ports

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.listener}{path}"

    # -- processes ----------------------------------------------------------------------------
    def _add(self, name: str, argv: list[str], tree: Path | None = None) -> BenchProcess:
        process = BenchProcess(
            f"{self.configuration.key}-{name}", argv, self.workdir, **source_tree_launch(tree)
        )
        self.processes[name] = process
        return process

    def _start_upstream(self) -> None:
        port = str(self.upstream_port)
        if self.upstream_kind == "productpage":
            argv = [sys.executable, "-m", "extauthz.rig.servers", "productpage", "--port", port]
        else:
            argv = [sys.executable, str(BENCH_DIR / "upstream.py"), "--port", port]
        process = self._add("upstream", argv)
        process.start()
        process.wait_until(answers_200(f"http://127.0.0.1:{port}/productpage"))

    def _start_authorizer(self) -> None:
        config = self.configuration
        argv = self.authorizer_argv()
        if config.authorizer == "always_ok":
            process = self._add("authorizer", argv)
            process.start()
            process.wait_until(accepts_tcp(self.grpc_port))
        elif config.authorizer == "extauthz":
            process = self._add("authorizer", argv, config.extauthz_tree)
            process.start()
            process.wait_until(answers_200(f"http://127.0.0.1:{self.http_port}/readyz"))

    def authorizer_argv(self) -> list[str]:
        """The command line of the gRPC authorizer ([] for configurations without one)."""
        config = self.configuration
        if config.authorizer == "always_ok":
            argv = [sys.executable, str(BENCH_DIR / "always_ok.py"), "--port", str(self.grpc_port),
                    "--loop", config.loop]  # fmt: skip
            if config.burn_us:
                argv += ["--burn-us", str(config.burn_us)]
            return argv
        if config.authorizer == "extauthz":
            argv = [
                sys.executable, "-m", "extauthz", "serve", "--config", str(self.policies),
                "--namespace", "istio-system", "--labels", "app=istio-ingressgateway",
                "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--http-addr", f"127.0.0.1:{self.http_port}",
            ]  # fmt: skip
            if self.decision_log != "default":  # default: serve's own (no flag at all)
                argv += ["--decision-log", self.decision_log]
            return argv
        return []

    def envoy_config(self) -> dict[str, Any]:
        config = self.configuration
        upstream = self.upstream_port if config.has_upstream else None
        if config.authorizer == "none":
            return configs.no_auth(self.listener, self.admin, upstream)
        if config.authorizer == "jwt_authn":
            return configs.native(self.listener, self.admin, self.upstream_port, self.policies)
        return configs.ext_authz(self.listener, self.admin, self.grpc_port, self.upstream_port)

    def _start_envoy(self) -> None:
        path = configs.write_config(
            self.envoy_config(), self.workdir / f"{self.configuration.key}-envoy.yaml"
        )
        complaint = configs.validate(path)
        if complaint is not None:
            raise RuntimeError(f"envoy --mode validate rejects {path}:\n{complaint}")
        argv = [find_binary("envoy"), "-c", str(path), "--concurrency", "1",
                "--disable-hot-restart", "-l", "warning"]  # fmt: skip
        process = self._add("envoy", argv)
        process.start()
        process.wait_until(answers_200(f"http://127.0.0.1:{self.admin}/ready"))

    def start(self) -> Stack:
        if self.configuration.has_upstream:
            self._start_upstream()
        self._start_authorizer()
        self._start_envoy()
        return self

    # -- what the processes did ---------------------------------------------------------------
    def envoy_counters(self) -> dict[str, int]:
        """The listener's counters (downstream_rq_2xx, ext_authz.error, jwt_authn.denied, …)
        without the `http.gateway.` prefix."""
        url = f"http://127.0.0.1:{self.admin}/stats?usedonly&filter=^http\\.gateway\\."
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        counters = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(STAT_PREFIX) and value.strip().isdigit():
                counters[name[len(STAT_PREFIX) :]] = int(value)
        return counters

    def check_duration_totals(self) -> tuple[float, int] | None:
        """extauthz's own account of the time spent inside Check (sum in seconds, count),
        from its Prometheus histogram; None for other authorizers."""
        if self.configuration.authorizer != "extauthz":
            return None
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        totals = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in (
                "extauthz_check_duration_seconds_sum",
                "extauthz_check_duration_seconds_count",
            ):
                totals[name.rpartition("_")[2]] = float(value)
        return totals.get("sum", 0.0), int(totals.get("count", 0))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each running process, by role."""
        return {
            name: cpu_seconds(process.pid)
            for name, process in self.processes.items()
            if process.is_running and process.pid is not None
        }

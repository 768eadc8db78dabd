"""`extauthz serve --workers N`: N processes serving the same ports (SO_REUSEPORT).

The kernel spreads incoming connections over the workers; each Envoy connection stays with
one worker, so Envoy needs several connections (more worker threads, or more Envoys) for
the load to spread. Metrics add up across workers through prometheus-client's multiprocess
files. Signals given to the parent are passed to every worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_workers(argv: Sequence[str], count: int) -> int:
    """Run `extauthz <argv> --workers 1` `count` times; return the first failure's code."""
    directory = tempfile.mkdtemp(prefix="extauthz-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        for index in range(count):
            worker_env = {**env, "EXTAUTHZ_WORKER_INDEX": str(index)}
            command = [sys.executable, "-m", "extauthz", *argv, "--workers", "1"]
            children.append(subprocess.Popen(command, env=worker_env))
        return _wait(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait(children: list[subprocess.Popen[bytes]]) -> int:
    """Wait for all; if one dies on its own, stop the others and report it."""
    while True:
        codes = [child.poll() for child in children]
        if all(code is not None for code in codes):
            return next((code for code in codes if code), 0)
        failed = next((code for code in codes if code not in (None, 0)), None)
        if failed is not None:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                child.wait()
            return int(failed)
        time.sleep(0.1)

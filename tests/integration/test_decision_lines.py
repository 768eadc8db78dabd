"""`extauthz serve`'s decision lines as an operator reads them: bare JSON on stderr, and by
default the denials only (allowed requests are in Envoy's access log)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc

from extauthz.rig.processes import free_port
from tests.integration.test_operations import check_request, deny_path


def _checked_lines(tmp_path: Path, *flags: str) -> list[str]:
    """Start serve with a policy denying /x, send /x, /y, /x, stop it; its stderr lines."""
    config = tmp_path / "policy.yaml"
    config.write_text(deny_path("/x"))
    grpc_port, http_port = free_port(), free_port()
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "extauthz", "serve", "--config", str(config),
             "--namespace", "foo", "--grpc-addr", f"127.0.0.1:{grpc_port}",
             "--http-addr", f"127.0.0.1:{http_port}", *flags],
            stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1)
                    break
                except OSError:
                    assert time.monotonic() < deadline, stderr.read_text()
                    time.sleep(0.05)

            async def checks() -> None:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                    check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
                    for path in ("/x", "/y", "/x"):
                        await check(check_request(path))

            asyncio.run(checks())
        finally:
            process.terminate()
            assert process.wait(15) == 0
    return stderr.read_text().splitlines()


def _decision_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_by_default_every_denial_is_one_bare_json_line_and_allows_are_not(
    tmp_path: Path,
) -> None:
    lines = _checked_lines(tmp_path)
    decisions = _decision_lines(lines)
    assert [(d["path"], d["decision"], d["status"]) for d in decisions] == [
        ("/x", "deny", 403),
        ("/x", "deny", 403),
    ]
    # The service's own log keeps its format; only decision lines are bare JSON.
    assert not any("extauthz.decision" in line for line in lines)


def test_all_logs_allows_too_and_none_logs_nothing(tmp_path: Path) -> None:
    every = _decision_lines(_checked_lines(tmp_path, "--decision-log", "all"))
    assert [(d["path"], d["decision"]) for d in every] == [
        ("/x", "deny"),
        ("/y", "allow"),
        ("/x", "deny"),
    ]
    assert _decision_lines(_checked_lines(tmp_path, "--decision-log", "none")) == []

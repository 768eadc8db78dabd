"""Operating the service: reload (ConfigMap symlink swap) under load, invalid configs kept
out, SIGHUP, SIGTERM drain, readiness states."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from extauthz.config.workload import Workload
from extauthz.rig.processes import free_port
from extauthz.server.app import Service, Settings
from tests.support.jwks_server import JwksBehaviour, jwks_server
from tests.support.tokens import claims, jwks_of, rsa_key


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def deny_path(path: str) -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: deny, namespace: foo}}\nspec:\n  action: DENY\n  rules:\n"
        f"  - to:\n    - operation: {{paths: [{path}]}}\n"
    )


class ConfigMapDir:
    """A directory laid out like a Kubernetes ConfigMap volume: ..data -> ..<version>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0

    def publish(self, files: dict[str, str]) -> None:
        self.version += 1
        data = self.root / f"..2026_11_29_{self.version}"
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
        temporary = self.root / "..data_tmp"
        temporary.symlink_to(data.name)
        os.replace(temporary, self.root / "..data")  # atomic, as the kubelet does
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


def check_request(path: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", path, "svc"
    http.headers.update({":method": "GET", ":path": path, ":authority": "svc"})  # as Envoy does
    return request


async def watched_service(config_dir: Path) -> Service:
    """A started service on free ports that polls `config_dir` every 50 ms."""
    settings = Settings(
        (str(config_dir),),
        "127.0.0.1:0",
        "127.0.0.1:0",
        Workload("foo"),
        watch_interval_seconds=0.05,
    )
    service = Service(settings)
    await service.start()
    return service


def test_configmap_swap_under_load_no_errors_no_mixed_generations(tmp_path: Path) -> None:
    mount = ConfigMapDir(tmp_path)
    mount.publish({"policy.yaml": deny_path("/x")})

    async def scenario() -> None:
        service = await watched_service(tmp_path)
        seen: list[tuple[int, str, bool]] = []
        errors: list[BaseException] = []
        stop = asyncio.Event()

        async def hammer() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
                while not stop.is_set():
                    for path in ("/x", "/y"):
                        try:
                            answer = await check(check_request(path))
                        except grpc.RpcError as exc:
                            errors.append(exc)
                            continue
                        generation = int(answer.dynamic_metadata.fields["generation"].number_value)
                        seen.append((generation, path, answer.status.code == code_pb2.OK))

        workers = [asyncio.create_task(hammer()) for _ in range(4)]
        try:
            await asyncio.sleep(0.3)
            mount.publish({"policy.yaml": deny_path("/y")})
            deadline = time.monotonic() + 5
            while service.store.generation.number < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*workers)
            await service.stop()
        assert not errors
        generations = {g for g, _, _ in seen}
        assert generations == {1, 2}
        expected = {(1, "/x"): False, (1, "/y"): True, (2, "/x"): True, (2, "/y"): False}
        mixed = [item for item in seen if expected[(item[0], item[1])] != item[2]]
        assert not mixed
        assert len(seen) > 100

    run(scenario)


def test_invalid_config_is_kept_out_and_reported(tmp_path: Path) -> None:
    mount = ConfigMapDir(tmp_path)
    mount.publish({"policy.yaml": deny_path("/x")})

    async def scenario() -> None:
        service = await watched_service(tmp_path)
        try:
            mount.publish({"policy.yaml": deny_path("/y").replace("action: DENY", "action: NOPE")})
            deadline = time.monotonic() + 5
            while not service.store.last_error and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert service.store.generation.number == 1
            assert (
                "policy.yaml (document 1): AuthorizationPolicy foo/deny: field spec.action"
                in service.store.last_error
            )
            detail = await asyncio.to_thread(_readyz, service.http_port)
            assert detail["ready"] and detail["generation"] == 1
            assert "field spec.action" in detail["last_config_error"]
            metrics = service.metrics.exposition().decode()
            assert 'extauthz_config_reloads_total{result="error"} 1.0' in metrics
            assert "extauthz_config_last_reload_success 0.0" in metrics
            mount.publish({"policy.yaml": deny_path("/y")})
            deadline = time.monotonic() + 5
            while service.store.generation.number < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert service.store.generation.number == 2 and not service.store.last_error
        finally:
            await service.stop()

    run(scenario)


def _serve(config: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "extauthz", "serve", "--config", str(config), "--namespace", "foo",
         "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                return process, grpc_port, http_port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(process.stderr.read().decode() if process.stderr else "not ready")


def _readyz(http_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as response:
        detail: dict[str, object] = json.load(response)
        return detail


def _generation(http_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as response:
        return int(json.load(response)["generation"])


def test_sighup_reloads(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(deny_path("/x"))
    process, _, http_port = _serve(config, "--watch-interval", "0")
    try:
        config.write_text(deny_path("/y"))
        time.sleep(0.2)
        assert _generation(http_port) == 1  # watching is off
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while _generation(http_port) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _generation(http_port) == 2
    finally:
        process.terminate()
        process.wait(10)


def test_sigterm_drains_in_flight_checks_and_exits_zero(tmp_path: Path) -> None:
    key = rsa_key(kid="k")

    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(key))
        async with jwks_server(behaviour) as server:
            config = tmp_path / "ra.yaml"
            config.write_text(
                "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: foo}\n"
                f"spec:\n  jwtRules:\n  - issuer: iss\n    jwksUri: {server.jwks_uri}\n    timeout: 1500ms\n"
            )
            process, grpc_port, _ = await asyncio.to_thread(
                _serve, config, "--jwks-refetch-interval", "0"
            )
            behaviour.mode = (
                "hang"  # the next fetch (an unknown kid's refetch) takes the full timeout
            )
            token = key.sign(
                claims(iss="iss", exp=int(time.time()) + 60), headers={"kid": "rotated"}
            )
            request = check_request("/")
            request.attributes.request.http.headers["authorization"] = f"Bearer {token}"
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                check = external_auth_pb2_grpc.AuthorizationStub(channel).Check

                async def one() -> external_auth_pb2.CheckResponse:
                    return await check(request)

                in_flight = [asyncio.create_task(one()) for _ in range(20)]
                await asyncio.sleep(0.5)  # they are all waiting on the refetch now
                process.send_signal(signal.SIGTERM)
                answers = await asyncio.gather(*in_flight)
            assert all(a.denied_response.status.code == 401 for a in answers)
            code = await asyncio.to_thread(process.wait, 15)
            assert code == 0

    run(scenario)


def test_two_workers_share_the_ports_and_their_metrics_add_up(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(deny_path("/x"))
    process, grpc_port, http_port = _serve(config, "--workers", "2")
    try:
        pids: set[object] = set()
        deadline = time.monotonic() + 10
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(_readyz(http_port)["pid"])  # each call is a new connection
        assert len(pids) == 2

        async def checks() -> None:
            for _ in range(12):  # new channels, new connections, spread by the kernel
                async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                    check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
                    for path in ("/x", "/y", "/z"):
                        await check(check_request(path))

        run(checks)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'extauthz_checks_total{decision="deny",reason="policy"} 12.0' in metrics
        assert 'extauthz_checks_total{decision="allow",reason="ok"} 24.0' in metrics
        assert "extauthz_check_duration_seconds_count 36.0" in metrics
    finally:
        process.terminate()
        assert process.wait(15) == 0


def test_metrics_pass_promtool_and_have_the_documented_names(tmp_path: Path) -> None:
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            raise AssertionError("promtool is missing: `make test` installs Debian's prometheus")
        import pytest

        pytest.skip("promtool not installed (Debian package prometheus)")
    config = tmp_path / "policy.yaml"
    config.write_text(deny_path("/x"))

    async def scenario() -> bytes:
        service = Service(Settings((str(config),), "127.0.0.1:0", "127.0.0.1:0", Workload("foo")))
        await service.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
                for path in ("/x", "/y", "/y"):
                    await check(check_request(path))
            return service.metrics.exposition()
        finally:
            await service.stop()

    exposition = asyncio.run(scenario())
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    text = exposition.decode()
    for name in (
        'extauthz_checks_total{decision="deny",reason="policy"} 1.0',
        'extauthz_checks_total{decision="allow",reason="ok"} 2.0',
        'extauthz_decision_memo_lookups_total{result="hit"} 1.0',
        'extauthz_decision_memo_lookups_total{result="miss"} 2.0',
        "extauthz_decision_memo_entries 2.0",
        "extauthz_check_duration_seconds_bucket",
        'extauthz_policy_matches_total{action="DENY",mode="enforced",policy="foo/deny"} 1.0',
        'extauthz_config_reloads_total{result="ok"} 1.0',
        "extauthz_config_generation 1.0",
        "extauthz_config_last_reload_success 1.0",
        'extauthz_build_info{version="0.1.0"} 1.0',
    ):
        assert name in text

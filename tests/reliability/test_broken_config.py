"""A configuration that breaks never opens the gate: through the real `extauthz serve`.

The sample gateway policies deny `/api/v1/products/0` without a token. Each way an operator
or an attacker can break the files (truncate, typo, delete, dangle, bomb) must leave that
403 in place, be reported in /readyz and the metrics, be logged once, and clear when the
good files come back. At start-up the same breakages exit 1 with one line.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from extauthz.rig.processes import free_port
from extauthz.rig.rig import SAMPLES, Rig
from tests.support.hostile_yaml import alias_bomb

GOOD = (SAMPLES / "gateway-policies.yaml").read_text()
DENIED_PATH = "/api/v1/products/0"
WORKLOAD = ("--namespace", "istio-system", "--labels", "app=istio-ingressgateway")


def check_request(path: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", path, "gateway"
    http.headers.update({":method": "GET", ":path": path, ":authority": "gateway"})
    return request


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    config_dir: Path
    grpc_port: int
    http_port: int
    log: Path

    def check(self, path: str) -> int:
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            return int(stub.Check(check_request(path), timeout=5).status.code)

    def readyz(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz") as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics") as response:
            text = response.read().decode()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert found, f"{name} not in /metrics"
        return float(found.group(1))

    def wait_for(
        self, condition: Callable[[dict[str, object]], bool], timeout: float = 10
    ) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, detail = self.readyz()
            if condition(detail):
                return detail
            time.sleep(0.05)
        raise AssertionError(f"condition not met; /readyz: {detail}\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def serve(config_dir: Path, log: Path, *extra: str) -> Served:
    grpc_port, http_port = free_port(), free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "extauthz", "serve", "--config", str(config_dir), *WORKLOAD,
             "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}",
             "--watch-interval", "0.1", "--decision-log", "none", *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    served = Served(process, config_dir, grpc_port, http_port, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, served.log_text()
        try:
            if served.readyz()[0] == 200:
                return served
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(served.log_text())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config_dir = tmp_path_factory.mktemp("config")
    (config_dir / "policies.yaml").write_text(GOOD)
    running = serve(config_dir, tmp_path_factory.mktemp("log") / "extauthz.log")
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(10)


def _truncate(d: Path) -> None:
    (d / "policies.yaml").write_text("")


def _comment_only(d: Path) -> None:
    (d / "policies.yaml").write_text("# TODO\n---\n")


def _kind_typo(d: Path) -> None:
    (d / "policies.yaml").write_text(
        GOOD.replace("kind: AuthorizationPolicy", "kind: Authorizationpolicy")
    )


def _version_typo(d: Path) -> None:
    (d / "policies.yaml").write_text(
        GOOD.replace("security.istio.io/v1beta1", "security.istio.io/v1beta2")
    )


def _delete(d: Path) -> None:
    (d / "policies.yaml").unlink()


def _rename_to_bak(d: Path) -> None:
    (d / "policies.yaml").rename(d / "policies.yaml.bak")


def _dangling_symlink(d: Path) -> None:
    (d / "policies.yaml").unlink()
    (d / "policies.yaml").symlink_to("gone.yaml")


def _looping_symlink(d: Path) -> None:
    (d / "policies.yaml").unlink()
    (d / "policies.yaml").symlink_to("policies.yaml")


def _alias_bomb(d: Path) -> None:
    (d / "policies.yaml").write_text(GOOD + "---\n" + alias_bomb())


def _deep_nesting(d: Path) -> None:
    (d / "policies.yaml").write_text(GOOD + "---\n" + "[" * 3000 + "]" * 3000 + "\n")


def _empty_documents(d: Path) -> None:
    (d / "policies.yaml").write_text(GOOD + "---\n" * 100_000)


def _big_file(d: Path) -> None:
    with (d / "policies.yaml").open("a") as out:
        out.write("# padding\n" * (5 << 20))  # 50 MiB of comments


BREAKAGES = [
    pytest.param(_truncate, "no YAML document", id="truncated-to-0-bytes"),
    pytest.param(_comment_only, "no YAML document", id="only-a-comment-and-separator"),
    pytest.param(_kind_typo, "did you mean AuthorizationPolicy?", id="kind-typo"),
    pytest.param(_version_typo, "is not a version extauthz reads", id="api-version-typo"),
    pytest.param(_delete, "no *.yaml or *.yml file", id="file-deleted"),
    pytest.param(_rename_to_bak, "no *.yaml or *.yml file", id="renamed-to-bak"),
    pytest.param(_dangling_symlink, "broken symbolic link", id="dangling-symlink"),
    pytest.param(_looping_symlink, "broken symbolic link", id="looping-symlink"),
    pytest.param(_alias_bomb, "YAML alias", id="alias-bomb"),
    pytest.param(_deep_nesting, "nest", id="3000-level-nesting"),  # ours or libyaml's words
    pytest.param(_empty_documents, "more than 5000 YAML documents", id="100000-empty-documents"),
    pytest.param(_big_file, "larger than 8388608 bytes", id="50-MiB-file"),
]


def restore(config_dir: Path) -> None:
    for entry in config_dir.iterdir():
        entry.unlink()
    (config_dir / "policies.yaml").write_text(GOOD)


@pytest.mark.parametrize(("breakage", "message"), BREAKAGES)
def test_a_broken_reload_keeps_the_last_good_configuration(
    served: Served, breakage: Callable[[Path], None], message: str
) -> None:
    assert served.check(DENIED_PATH) == code_pb2.PERMISSION_DENIED
    rejected_before = served.log_text().count("configuration rejected")
    breakage(served.config_dir)
    try:
        started = time.monotonic()
        detail = served.wait_for(lambda d: message in str(d.get("last_config_error", "")))
        took = time.monotonic() - started
        assert served.check(DENIED_PATH) == code_pb2.PERMISSION_DENIED  # still closed
        assert served.check("/productpage") == code_pb2.OK  # and still serving
        status, detail = served.readyz()
        assert status == 200 and detail["generation"] == 1
        assert served.metric("extauthz_config_last_reload_success") == 0
        # SIGHUP on top of the watcher: the same broken files are reported once.
        served.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # nothing to poll for: the point is that no second line comes
        log = served.log_text()
        assert log.count("configuration rejected") - rejected_before == 1, log[-3000:]
        assert "Traceback" not in log
        print(f"{breakage.__name__}: rejected {took:.2f}s after the change")
    finally:
        restore(served.config_dir)
    served.wait_for(lambda d: "last_config_error" not in d)
    assert served.metric("extauthz_config_last_reload_success") == 1
    assert served.readyz()[1]["generation"] == 1  # the same content: nothing to swap


def test_after_a_bomb_the_good_file_and_sighup_apply_at_once(served: Served) -> None:
    _alias_bomb(served.config_dir)
    served.wait_for(lambda d: "YAML alias" in str(d.get("last_config_error", "")))
    (served.config_dir / "policies.yaml").write_text(GOOD.replace("/productpage", "/reviews"))
    served.process.send_signal(signal.SIGHUP)
    try:
        detail = served.wait_for(lambda d: d.get("generation") == 2, timeout=5)
        assert "last_config_error" not in detail
        assert served.check("/productpage") == code_pb2.PERMISSION_DENIED
        assert served.check("/reviews") == code_pb2.OK
    finally:
        restore(served.config_dir)
        served.wait_for(lambda d: d.get("generation") == 3)


def test_removing_one_file_of_two_is_applied_and_logged(tmp_path: Path) -> None:
    authn, policy = GOOD.split("\n---\n")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "authn.yaml").write_text(authn)
    (config_dir / "deny.yaml").write_text(policy)
    running = serve(config_dir, tmp_path / "extauthz.log")
    try:
        assert running.check(DENIED_PATH) == code_pb2.PERMISSION_DENIED
        (config_dir / "deny.yaml").unlink()
        detail = running.wait_for(lambda d: d.get("generation") == 2)
        assert "last_config_error" not in detail
        assert running.check(DENIED_PATH) == code_pb2.OK  # the DENY policy is gone, on purpose
        assert (
            "configuration generation 2 applied (removed AuthorizationPolicy "
            "istio-system/test-exclude)" in running.log_text()
        )
    finally:
        running.process.terminate()
        running.process.wait(10)


@pytest.mark.parametrize(("breakage", "message"), BREAKAGES)
def test_a_broken_configuration_at_start_up_exits_1_with_one_line(
    tmp_path: Path, breakage: Callable[[Path], None], message: str
) -> None:
    (tmp_path / "policies.yaml").write_text(GOOD)
    breakage(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "extauthz", "validate", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    print(f"validate {breakage.__name__}: exit 1 in {time.monotonic() - started:.2f}s")
    grpc_port, http_port = free_port(), free_port()
    done = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--config", str(tmp_path), *WORKLOAD,
         "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_an_empty_configuration_serves_only_when_asked(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    running = serve(config_dir, tmp_path / "extauthz.log", "--allow-empty-config")
    try:
        assert running.check(DENIED_PATH) == code_pb2.OK  # no policy: Istio allows
    finally:
        running.process.terminate()
        running.process.wait(10)


def test_through_envoy_a_broken_policy_file_still_denies(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "policies.yaml").write_text(GOOD)
    with Rig(
        tmp_path, gateway_policies=config_dir, extauthz_args=("--watch-interval", "0.1")
    ) as rig:
        url = f"{rig.gateway_url}{DENIED_PATH}"
        status = f"http://127.0.0.1:{rig.ports.gateway_http}/readyz"

        def get(target: str) -> int:
            try:
                with urllib.request.urlopen(target, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        def readyz() -> dict[str, object]:
            with urllib.request.urlopen(status, timeout=5) as response:
                detail: dict[str, object] = json.load(response)
                return detail

        assert get(url) == 403
        reached = rig.upstream_requests()
        for breakage in (_truncate, _kind_typo, _delete):
            breakage(config_dir)
            deadline = time.monotonic() + 10
            while "last_config_error" not in readyz() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "last_config_error" in readyz(), breakage.__name__
            assert get(url) == 403, breakage.__name__
            restore(config_dir)
            deadline = time.monotonic() + 10
            while "last_config_error" in readyz() and time.monotonic() < deadline:
                time.sleep(0.05)
        assert rig.upstream_requests() == reached  # nothing got through
        assert get(f"{rig.gateway_url}/productpage") == 200


def test_a_slow_reload_is_abandoned_at_its_deadline_and_the_next_one_applies(
    tmp_path: Path,
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "policies.yaml").write_text(GOOD)
    running = serve(
        config_dir, tmp_path / "extauthz.log", "--config-load-timeout", "0.1",
        "--max-config-nodes", "10000000",
    )  # fmt: skip
    try:
        # Within every other bound, but over a second of YAML to read and compile.
        many_paths = ", ".join(f"/p{i}" for i in range(400_000))
        (config_dir / "policies.yaml").write_text(GOOD.replace('"/productpage"', many_paths))
        started = time.monotonic()
        running.wait_for(lambda d: "took longer than 0.1s" in str(d.get("last_config_error")))
        print(f"slow reload rejected {time.monotonic() - started:.2f}s after the change")
        assert running.check(DENIED_PATH) == code_pb2.PERMISSION_DENIED
        (config_dir / "policies.yaml").write_text(GOOD.replace("/productpage", "/reviews"))
        running.process.send_signal(signal.SIGHUP)
        detail = running.wait_for(lambda d: d.get("generation") == 2, timeout=5)
        assert "last_config_error" not in detail
        assert running.check("/reviews") == code_pb2.OK
    finally:
        running.process.terminate()
        running.process.wait(10)

"""Rollouts without 403s: two extauthz instances behind one Envoy whose ext_authz filter and
`extauthz` cluster are exactly the shipped Kubernetes gateway's (retries on connection
failures, gRPC health checks, outlier detection, keepalive). One instance is stopped
(SIGTERM: it reports not-serving and drains) and started again while requests flow; not one
answer may differ from what the policies say."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.rig.demo import http_get
from extauthz.rig.envoy_config import localize, write_localized
from extauthz.rig.processes import Process, answers_200, free_port
from extauthz.rig.rig import REPO_ENVOY_DIR, SAMPLES, find_binary

# A load drill (seconds of traffic on 2 cores, with timeouts of 1 s in the path): its own
# target, `make drain`, as benchmarks are; `make test` does not time anything.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("EXTAUTHZ_DRAIN_TEST") != "1", reason="a load drill: run `make drain`"
    ),
]

K8S_GATEWAY = Path(__file__).resolve().parents[2] / "k8s" / "demo" / "shared" / "gateway-envoy.yaml"
EXPECTED = {"/productpage": 200, "/api/v1/products/0": 403}


def _shipped_gateway() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ext_authz filter and the `extauthz` cluster of the k8s gateway's Envoy config."""
    for document in yaml.safe_load_all(K8S_GATEWAY.read_text()):
        if document and document.get("kind") == "ConfigMap":
            config = yaml.safe_load(document["data"]["envoy.yaml"])
            listener = config["static_resources"]["listeners"][0]
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            ext_authz = next(f for f in hcm["http_filters"] if f["name"].endswith("ext_authz"))
            cluster = next(
                c for c in config["static_resources"]["clusters"] if c["name"] == "extauthz"
            )
            return ext_authz, cluster
    raise AssertionError(f"no Envoy ConfigMap in {K8S_GATEWAY}")


def _bootstrap(workdir: Path, grpc_ports: list[int], upstream: int) -> tuple[Path, int, int]:
    listener, admin = free_port(), free_port()
    config = localize(
        REPO_ENVOY_DIR / "gateway.yaml",
        listener,
        admin,
        {"extauthz": grpc_ports[0], "upstream": upstream},
    )
    ext_authz, cluster = _shipped_gateway()
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    hcm["http_filters"] = [
        ext_authz if f["name"].endswith("ext_authz") else f for f in hcm["http_filters"]
    ]
    cluster.pop("cluster_type", None)  # DNS in Kubernetes; two loopback endpoints here
    cluster["type"] = "STATIC"
    cluster["load_assignment"]["endpoints"] = [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}}} for port in grpc_ports]}
    ]  # fmt: skip
    clusters = config["static_resources"]["clusters"]
    config["static_resources"]["clusters"] = [
        cluster if c["name"] == "extauthz" else c for c in clusters
    ]
    return write_localized(config, workdir / "envoy.yaml"), listener, admin


def _extauthz(workdir: Path, name: str, grpc: int, http: int) -> Process:
    return Process(
        name,
        [sys.executable, "-m", "extauthz", "serve", "--config", str(SAMPLES / "gateway-policies.yaml"),
         "--namespace", "istio-system", "--labels", "app=istio-ingressgateway",
         "--grpc-addr", f"127.0.0.1:{grpc}", "--http-addr", f"127.0.0.1:{http}",
         "--decision-log", "none"],
        workdir,
    )  # fmt: skip


async def _get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: example.com\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def _load(port: int, stop: asyncio.Event, answers: list[tuple[str, int]]) -> None:
    async def client(n: int) -> None:
        paths = list(EXPECTED)
        while not stop.is_set():
            path = paths[n % len(paths)]
            n += 1
            answers.append((path, await _get(port, path)))

    await asyncio.gather(*(client(n) for n in range(8)))


def test_restarting_one_instance_under_load_changes_no_answer(tmp_path: Path) -> None:
    grpc = [free_port(), free_port()]
    http = [free_port(), free_port()]
    upstream = free_port()
    app = Process(
        "productpage",
        [sys.executable, "-m", "extauthz.rig.servers", "productpage", "--port", str(upstream)],
        tmp_path,
    )
    instances = [_extauthz(tmp_path, f"extauthz-{i}", grpc[i], http[i]) for i in range(2)]
    config, listener, admin = _bootstrap(tmp_path, grpc, upstream)
    envoy = Process(
        "envoy",
        [find_binary("envoy"), "-c", str(config), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
        tmp_path,
    )  # fmt: skip
    restarted = _extauthz(tmp_path, "extauthz-0-again", grpc[0], http[0])
    processes = [app, *instances, envoy, restarted]
    try:
        app.start()
        for instance in instances:
            instance.start()
        app.wait_until(answers_200(f"http://127.0.0.1:{upstream}/productpage"))
        for instance, port in zip(instances, http, strict=True):
            instance.wait_until(answers_200(f"http://127.0.0.1:{port}/readyz"))
        envoy.start()
        envoy.wait_until(answers_200(f"http://127.0.0.1:{admin}/ready"))

        async def scenario() -> list[tuple[str, int]]:
            answers: list[tuple[str, int]] = []
            stop = asyncio.Event()
            load = asyncio.create_task(_load(listener, stop, answers))
            await asyncio.sleep(2)
            await asyncio.to_thread(instances[0].stop, 15)  # SIGTERM: not-serving, drain, exit
            await asyncio.sleep(1)
            restarted.start()
            await asyncio.to_thread(
                restarted.wait_until, answers_200(f"http://127.0.0.1:{http[0]}/readyz")
            )
            await asyncio.sleep(3)
            stop.set()
            await load
            return answers

        answers = asyncio.run(scenario())
        stats = http_get(f"http://127.0.0.1:{admin}/stats?filter=ext_authz|cluster.extauthz").body
    finally:
        for process in reversed(processes):
            process.stop()
    unexpected = [(path, status) for path, status in answers if status != EXPECTED[path]]
    assert len(answers) > 200, "the load did not flow"
    counters = [line for line in stats.splitlines() if not line.endswith(": 0")]
    assert unexpected == [], (
        f"{len(unexpected)} of {len(answers)} answers differed: {unexpected[:10]}\n"
        + "\n".join(counters)
    )

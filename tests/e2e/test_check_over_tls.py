"""The Check port over TLS with client certificates: Envoy's `extauthz` cluster speaks TLS
and presents its certificate; extauthz refuses a client without one, and the gateway then
fails closed (403), never open."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.rig.demo import http_get
from extauthz.rig.envoy_config import localize, write_localized
from extauthz.rig.processes import Process, answers_200, free_port
from extauthz.rig.rig import REPO_ENVOY_DIR, SAMPLES, find_binary
from tests.conformance.certs import ClientCert, _client, ca_pem, server

pytestmark = pytest.mark.e2e

GATEWAY = ("--namespace", "istio-system", "--labels", "app=istio-ingressgateway")
ENVOY_CLIENT = ClientCert(uris=("spiffe://cluster.local/ns/istio-system/sa/gateway",))


def _upstream_tls(with_client_certificate: bool) -> dict[str, Any]:
    context: dict[str, Any] = {
        "sni": "example.com",  # a name in the server certificate
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {"trusted_ca": {"inline_string": ca_pem()}},
        },
    }
    if with_client_certificate:
        issued = _client(ENVOY_CLIENT)
        context["common_tls_context"]["tls_certificates"] = [
            {
                "certificate_chain": {"inline_string": issued.cert_pem.decode()},
                "private_key": {"inline_string": issued.key_pem.decode()},
            }
        ]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
            ".UpstreamTlsContext",
            **context,
        },
    }


@dataclass
class TlsRig:
    gateway_with_certificate: str
    gateway_without_certificate: str
    grpc_port: int


def _envoy(
    workdir: Path, name: str, grpc_port: int, upstream: int, certificate: bool
) -> tuple[Process, int, int]:
    listener, admin = free_port(), free_port()
    config = localize(
        REPO_ENVOY_DIR / "gateway.yaml",
        listener,
        admin,
        {"extauthz": grpc_port, "upstream": upstream},
    )
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "extauthz":
            cluster["transport_socket"] = _upstream_tls(certificate)
    path = write_localized(config, workdir / f"{name}.yaml")
    argv = [
        find_binary("envoy"),
        "-c",
        str(path),
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "-l",
        "warning",
    ]
    return Process(name, argv, workdir), listener, admin


@pytest.fixture(scope="module")
def tls_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRig]:
    workdir = Path(tmp_path_factory.mktemp("tls"))
    issued = server()
    (workdir / "server.pem").write_bytes(issued.cert_pem)
    (workdir / "server.key").write_bytes(issued.key_pem)
    (workdir / "ca.pem").write_text(ca_pem())
    grpc_port, http_port, upstream = free_port(), free_port(), free_port()
    app = Process(
        "productpage",
        [sys.executable, "-m", "extauthz.rig.servers", "productpage", "--port", str(upstream)],
        workdir,
    )
    extauthz = Process(
        "extauthz",
        [sys.executable, "-m", "extauthz", "serve", "--config", str(SAMPLES / "gateway-policies.yaml"),
         *GATEWAY, "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}",
         "--grpc-tls-cert", str(workdir / "server.pem"), "--grpc-tls-key", str(workdir / "server.key"),
         "--grpc-client-ca", str(workdir / "ca.pem")],
        workdir,
    )  # fmt: skip
    with_cert, listen_a, admin_a = _envoy(workdir, "envoy-cert", grpc_port, upstream, True)
    without_cert, listen_b, admin_b = _envoy(workdir, "envoy-nocert", grpc_port, upstream, False)
    processes = [app, extauthz, with_cert, without_cert]
    try:
        for process in processes:
            process.start()
        app.wait_until(answers_200(f"http://127.0.0.1:{upstream}/productpage"))
        extauthz.wait_until(answers_200(f"http://127.0.0.1:{http_port}/readyz"))
        with_cert.wait_until(answers_200(f"http://127.0.0.1:{admin_a}/ready"))
        without_cert.wait_until(answers_200(f"http://127.0.0.1:{admin_b}/ready"))
        yield TlsRig(f"http://127.0.0.1:{listen_a}", f"http://127.0.0.1:{listen_b}", grpc_port)
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/productpage", False, 200),
        ("/api/v1/products/0", False, 403),
        ("/api/v1/products/0", True, 200),
    ],
)
def test_the_matrix_through_tls_with_a_client_certificate(
    tls_rig: TlsRig, path: str, token: bool, status: int
) -> None:
    headers = (
        {"Authorization": f"Bearer {(SAMPLES / 'demo.jwt').read_text().strip()}"} if token else {}
    )
    answer = http_get(f"{tls_rig.gateway_with_certificate}{path}", headers)
    assert answer.status == status, answer.body


def test_an_envoy_without_a_client_certificate_fails_closed(tls_rig: TlsRig) -> None:
    # The handshake is refused, ext_authz errs, status_on_error answers 403: never open.
    for path in ("/productpage", "/api/v1/products/0"):
        assert http_get(f"{tls_rig.gateway_without_certificate}{path}").status == 403


def test_plaintext_grpc_is_refused(tls_rig: TlsRig) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{tls_rig.grpc_port}")
    with channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_a_file_that_is_not_pem_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    result = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--config", str(SAMPLES / "gateway-policies.yaml"),
         "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
         "--grpc-tls-cert", str(bad), "--grpc-tls-key", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"extauthz: --grpc-tls-cert {bad}:")
    assert "Traceback" not in result.stderr

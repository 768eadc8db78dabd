"""Two real Envoys side by side in front of one echo upstream: (a) the native twin
(`extauthz envoy-config`'s filters) and (b) ext_authz -> `extauthz serve`. Every generated
configuration lives in a namespace of its own and gets one listener in each Envoy, so one
pair of Envoys and one extauthz answer a whole batch of configurations.

What is compared per request: status, body (for a request that reached the upstream, the
body is the upstream's echo of what it received: method, path, every header), and the
`www-authenticate` header.

A case may be a TLS case: then both Envoys' listeners require and validate a client
certificate (certs.py), and each request presents its `peer` certificate and sends its
`sni`, so `source.principal`, `source.namespace`, serviceAccounts, trustDomains and
`connection.sni` come from the TLS session in both Envoys."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload, applies_to
from extauthz.native.bootstrap import NativeConfig, bootstrap, native_config
from extauthz.rig.processes import Process, answers_200, free_port
from extauthz.rig.rig import REPO_ENVOY_DIR, find_binary
from tests.conformance.certs import (
    DEFAULT_CLIENT,
    ClientCert,
    client_context,
    downstream_tls_context,
)

ROOT_NAMESPACE = "conformance-root"  # no generated resource lives here
# Headers each Envoy makes up per request: never equal, never a difference.
UNCOMPARED_UPSTREAM_HEADERS = frozenset({"x-request-id"})


def joined_headers(pairs: Sequence[Sequence[str]]) -> dict[str, str]:
    """Headers as HTTP means them: a name's entries joined with "," in order, names in any
    order. ext_authz can only append to a header's one entry, where jwt_authn adds a new
    entry per verified token; to a reader of the list both say the same (README: known
    differences)."""
    joined: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in UNCOMPARED_UPSTREAM_HEADERS:
            joined.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in sorted(joined.items())}


@dataclass(frozen=True)
class Request:
    method: str = "GET"
    path: str = "/"
    host: str = "example.com"
    headers: tuple[tuple[str, str], ...] = ()
    label: str = ""  # what the generator meant, for reports
    # Read in TLS cases only: the certificate presented (None: DEFAULT_CLIENT) and the
    # server name sent (None or "": no SNI).
    peer: ClientCert | None = None
    sni: str | None = None

    def tls_description(self) -> str:
        peer = (self.peer or DEFAULT_CLIENT).describe()
        return f"TLS as {peer}, SNI {self.sni!r}" if self.sni else f"TLS as {peer}, no SNI"

    def wire(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines += ["connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1")


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str:
        return ",".join(v for k, v in self.headers if k == name)

    def comparable(self) -> dict[str, Any]:
        body: Any = self.body.decode("latin-1")
        if self.header("x-echo") == "1" and not self.body:  # HEAD: no body, its digest
            body = {"echo-digest": self.header("x-echo-digest")}
        elif self.header("x-echo") == "1":
            echoed = json.loads(self.body)
            echoed["headers"] = joined_headers(echoed["headers"])
            body = echoed
        return {
            "status": self.status,
            "www-authenticate": self.header("www-authenticate"),
            "body": body,
        }


@dataclass
class Case:
    """One generated configuration (YAML documents, all in `namespace`) and its requests."""

    namespace: str
    documents: list[dict[str, Any]]
    requests: list[Request] = field(default_factory=list)
    workload_labels: dict[str, str] = field(default_factory=lambda: {"app": "web"})
    tls: bool = False  # listeners require a client certificate; requests present `peer`

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.documents, sort_keys=False)


@dataclass(frozen=True)
class Difference:
    case: Case
    request: Request
    native: dict[str, Any]
    extauthz: dict[str, Any]

    def report(self) -> str:
        transport = f" over {self.request.tls_description()}" if self.case.tls else ""
        return (
            f"--- configuration {self.case.namespace}\n{self.case.yaml()}"
            f"--- request ({self.request.label}){transport}\n"
            f"{self.request.wire().decode('latin-1')}"
            f"--- native Envoy\n{json.dumps(self.native, indent=1)}\n"
            f"--- extauthz\n{json.dumps(self.extauthz, indent=1)}\n"
        )


# -- the upstream ------------------------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    headers = [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in request.raw_headers]
    body = {"method": request.method, "path": request.raw_path, "headers": headers}
    digest = hashlib.sha256(
        json.dumps([request.method, request.raw_path, joined_headers(headers)]).encode()
    )
    return web.json_response(body, headers={"x-echo": "1", "x-echo-digest": digest.hexdigest()})


async def start_echo(port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


# -- the client --------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader, method: str) -> Response:
    """One HTTP/1.1 response, read to its end by its framing (not to the connection's close:
    Envoy holds a closing connection open up to its delayed_close_timeout)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    fields = dict(headers)
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif fields.get("transfer-encoding") == "chunked":
        body = await _read_chunked(reader)
    elif "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
    else:
        body = await reader.read(-1)
    return Response(status, tuple(headers), body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def send(
    port: int, request: Request, timeout: float = 10.0, *, tls: bool = False
) -> Response:
    """One request on a connection of its own; with `tls`, presenting the request's peer
    certificate and sending its SNI."""
    context: ssl.SSLContext | None = None
    if tls:
        context = client_context(request.peer or DEFAULT_CLIENT)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=(request.sni or "") if tls else None
        ),
        timeout,
    )
    try:
        writer.write(request.wire())
        await writer.drain()
        return await asyncio.wait_for(_read_response(reader, request.method), timeout)
    finally:
        writer.close()


# -- the two Envoys and extauthz ---------------------------------------------------------------


def _shipped_ext_authz_filter() -> dict[str, Any]:
    """The ext_authz filter exactly as envoy/gateway.yaml ships it."""
    config = yaml.safe_load((REPO_ENVOY_DIR / "gateway.yaml").read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    found: dict[str, Any] = hcm["typed_config"]["http_filters"][0]
    assert found["name"] == "envoy.filters.http.ext_authz"
    return found


def _extauthz_cluster(port: int) -> dict[str, Any]:
    return {
        "name": "extauthz",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "extauthz",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }  # fmt: skip


TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3"
        ".TlsInspector"
    },
}


def with_tls(config: dict[str, Any]) -> dict[str, Any]:
    """A bootstrap's listener made an mTLS listener, as istiod's inbound ones are: the TLS
    inspector (which reads the SNI for `requested_server_name` and ext_authz's tls_session)
    and a transport socket validating client certificates."""
    listener = config["static_resources"]["listeners"][0]
    listener["listener_filters"] = [TLS_INSPECTOR]
    for chain in listener["filter_chains"]:
        chain["transport_socket"] = downstream_tls_context()
    return config


def _merged(parts: Sequence[tuple[str, dict[str, Any]]], admin: int) -> dict[str, Any]:
    """One bootstrap holding every part's listener (renamed) and the union of clusters."""
    listeners, clusters = [], {}
    for name, part in parts:
        listener = part["static_resources"]["listeners"][0]
        listener["name"] = name
        listeners.append(listener)
        for cluster in part["static_resources"]["clusters"]:
            clusters.setdefault(cluster["name"], cluster)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners, "clusters": list(clusters.values())},
    }


def native_of(case: Case) -> NativeConfig:
    """What `extauthz envoy-config` writes for the case's workload (inline keys only)."""
    config = parse_documents(case.yaml(), f"{case.namespace}.yaml", case.namespace)
    workload = Workload(case.namespace, case.workload_labels)
    authns = [a for a in config.request_authentications if applies_to(a, workload, ROOT_NAMESPACE)]
    policies = [p for p in config.authorization_policies if applies_to(p, workload, ROOT_NAMESPACE)]

    def no_fetch(rule: Any) -> str | None:
        raise AssertionError("conformance configurations carry inline keys")

    return native_config(authns, policies, no_fetch)


def _distinct_ports(count: int, avoid: set[int] | None = None) -> list[int]:
    """`count` free loopback ports, all different (the kernel may hand one out twice)."""
    taken = set(avoid or ())
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports


class Pair:
    """The two Envoys and extauthz for one batch of cases; ports per case."""

    def __init__(self, workdir: Path, cases: Sequence[Case]) -> None:
        self.workdir = workdir
        self.cases = list(cases)
        ports = _distinct_ports(3 + 2 * len(self.cases))
        self.upstream, self.grpc, self.http = ports[:3]
        self.native_ports = ports[3 : 3 + len(self.cases)]
        self.authz_ports = ports[3 + len(self.cases) :]
        self.processes: list[Process] = []
        self.warnings: list[str] = []

    def _envoy(self, name: str, config: dict[str, Any], admin: int) -> Process:
        path = self.workdir / f"{name}.json"  # JSON: no YAML 1.1 reading of `n` as false
        path.write_text(json.dumps(config))
        argv = [find_binary("envoy"), "-c", str(path), "--concurrency", "1",
                "--disable-hot-restart", "-l", "error"]  # fmt: skip
        return Process(name, argv, self.workdir)

    def start(self) -> None:
        policies = self.workdir / "policies.yaml"
        policies.write_text("---\n".join(case.yaml() for case in self.cases))
        extauthz = Process(
            "extauthz",
            [sys.executable, "-m", "extauthz", "--log-level", "WARNING", "serve",
             "--config", str(policies),
             "--root-namespace", ROOT_NAMESPACE, "--grpc-addr", f"127.0.0.1:{self.grpc}",
             "--http-addr", f"127.0.0.1:{self.http}", "--decision-log", "none"],
            self.workdir,
        )  # fmt: skip
        native_parts, authz_parts = [], []
        ext_authz = _shipped_ext_authz_filter()
        for case, native_port, authz_port in zip(
            self.cases, self.native_ports, self.authz_ports, strict=True
        ):
            native = native_of(case)
            self.warnings += native.warnings
            up = ("127.0.0.1", self.upstream)
            native_boot = bootstrap(native, ("127.0.0.1", native_port), up)
            native_parts.append(
                (case.namespace, with_tls(native_boot) if case.tls else native_boot)
            )
            via = NativeConfig((ext_authz,), (_extauthz_cluster(self.grpc),), ())
            authz = bootstrap(via, ("127.0.0.1", authz_port), up)
            hcm = authz["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            labels = ",".join(f"{k}={v}" for k, v in case.workload_labels.items())
            hcm["typed_config"]["route_config"]["virtual_hosts"][0]["typed_per_filter_config"] = {
                "envoy.filters.http.ext_authz": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3"
                    ".ExtAuthzPerRoute",
                    "check_settings": {
                        "context_extensions": {"namespace": case.namespace, "labels": labels}
                    },
                }
            }
            authz_parts.append((case.namespace, with_tls(authz) if case.tls else authz))
        native_admin, authz_admin = _distinct_ports(
            2, avoid=set(self.native_ports + self.authz_ports)
        )
        self.processes = [
            extauthz,
            self._envoy("native", _merged(native_parts, native_admin), native_admin),
            self._envoy("authz", _merged(authz_parts, authz_admin), authz_admin),
        ]
        for process in self.processes:
            process.start()
        extauthz.wait_until(answers_200(f"http://127.0.0.1:{self.http}/readyz"))
        self.processes[1].wait_until(answers_200(f"http://127.0.0.1:{native_admin}/ready"))
        self.processes[2].wait_until(answers_200(f"http://127.0.0.1:{authz_admin}/ready"))

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    async def compare(self, concurrency: int = 8) -> tuple[int, list[Difference]]:
        """Send every case's requests to both Envoys; (requests sent, differences)."""
        runner = await start_echo(self.upstream)
        semaphore = asyncio.Semaphore(concurrency)
        differences: list[Difference] = []

        async def one(index: int, request: Request) -> None:
            tls = self.cases[index].tls
            async with semaphore:
                native = await send(self.native_ports[index], request, tls=tls)
                authz = await send(self.authz_ports[index], request, tls=tls)
            a, b = native.comparable(), authz.comparable()
            if a != b:
                differences.append(Difference(self.cases[index], request, a, b))

        try:
            jobs = [
                one(index, request)
                for index, case in enumerate(self.cases)
                for request in case.requests
            ]
            await asyncio.gather(*jobs)
        finally:
            await runner.cleanup()
        return len(jobs), differences

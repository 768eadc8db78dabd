"""What the reliability tests share: the sample gateway scenario (requests, tokens, its
200/403 matrix), a real `extauthz serve` child process on free loopback ports with its RSS
and decision lines, and hostile CheckRequests built from a `random.Random` (a seeded one, or
one Hypothesis drives), each with a readable list of the steps that made it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml
from cryptography.hazmat.primitives import serialization
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2

from extauthz.rig.processes import Process, ProcessGroup, answers_200, free_port
from extauthz.rig.rig import SAMPLES
from extauthz.rig.tokens import mint

REPO = Path(__file__).resolve().parents[2]
SAMPLE_POLICIES = SAMPLES / "gateway-policies.yaml"
GATEWAY_NAMESPACE = "istio-system"
GATEWAY_LABELS = "app=istio-ingressgateway"
HOST = "gw.example"
ISSUER = "testing@secure.istio.io"  # iss and sub of the sample tokens
DEMO = (SAMPLES / "demo.jwt").read_text().strip()
GROUPS = (SAMPLES / "groups-scope.jwt").read_text().strip()
ANSWER_CODES = frozenset({code_pb2.OK, code_pb2.PERMISSION_DENIED, code_pb2.UNAUTHENTICATED})


# --- the sample scenario ------------------------------------------------------------------


def sample_request(
    path: str = "/productpage", token: str = "", where: str = "header"
) -> external_auth_pb2.CheckRequest:
    """A GET to the sample gateway as Envoy sends it; the token, if any, in the
    Authorization header or in the `access_token` query parameter (Istio's two defaults)."""
    if token and where == "query":
        path = f"{path}{'&' if '?' in path else '?'}access_token={token}"
    request = external_auth_pb2.CheckRequest()
    attributes = request.attributes
    http = attributes.request.http
    http.id, http.method, http.host, http.path = "1", "GET", HOST, path
    http.scheme, http.protocol = "http", "HTTP/1.1"
    http.headers.update(
        {
            ":method": "GET",
            ":authority": HOST,
            ":path": path,
            ":scheme": "http",
            "user-agent": "reliability-test",
            "x-request-id": "0b5c6d3e-reliability",
        }
    )
    if token and where == "header":
        http.headers["authorization"] = f"Bearer {token}"
    attributes.source.address.socket_address.address = "127.0.0.1"
    attributes.source.address.socket_address.port_value = 40000
    attributes.destination.address.socket_address.address = "127.0.0.1"
    attributes.destination.address.socket_address.port_value = 8080
    return request


def sample_matrix() -> list[tuple[str, str, int]]:
    """(path, token name, HTTP status) rows of samples/matrix.yaml."""
    rows = yaml.safe_load((SAMPLES / "matrix.yaml").read_text())
    return [(row["path"], row["token"], int(row["status"])) for row in rows]


def matrix_request(path: str, token_name: str) -> external_auth_pb2.CheckRequest:
    return sample_request(path, {"none": "", "demo": DEMO}[token_name])


def answered_status(response: external_auth_pb2.CheckResponse) -> int:
    """The HTTP status the client would see: 200 when allowed, else the denial's status."""
    if response.status.code == code_pb2.OK:
        return 200
    return int(response.denied_response.status.code)


def answer_problem(response: object) -> str | None:
    """What is wrong with an answer to Check, or None when it is a proper one: a
    CheckResponse with OK (and an OkHttpResponse) or a denial code (and a 401/403)."""
    if not isinstance(response, external_auth_pb2.CheckResponse):
        return f"not a CheckResponse: {type(response).__name__}"
    code = response.status.code
    if code not in ANSWER_CODES:
        return f"status code {code}"
    kind = response.WhichOneof("http_response")
    if code == code_pb2.OK:
        return None if kind == "ok_response" else f"OK with {kind}"
    if kind != "denied_response":
        return f"status {code} with {kind}"
    if response.denied_response.status.code not in (401, 403):
        return f"denied with HTTP {response.denied_response.status.code}"
    return None


def metadata_reason(response: external_auth_pb2.CheckResponse) -> str:
    field = response.dynamic_metadata.fields.get("reason")
    return field.string_value if field is not None else ""


# A configuration for the hostile tests: the sample gateway policies plus narrow DENY rules
# on the gateway (so decisions, and the memo's keys, read addresses, ports, principal, SNI,
# headers and claims too; none of them matches a sample request, so the matrix holds) and
# a workload of its own that a route can name with context_extensions.
EXTRA_POLICIES = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: hostile-deny, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{app: istio-ingressgateway}}}}
  action: DENY
  rules:
  - from: [{{source: {{ipBlocks: ["203.0.113.0/24", "2001:db8::/32"]}}}}]
  - from: [{{source: {{remoteIpBlocks: ["198.51.100.0/24"]}}}}]
  - from: [{{source: {{principals: ["spiffe://cluster.local/ns/evil/*"]}}}}]
  - to: [{{operation: {{methods: ["DELETE"], paths: ["/api/*"]}}}}]
  - to: [{{operation: {{hosts: ["blocked.example"]}}}}]
  - to: [{{operation: {{ports: ["8443"]}}}}]
  - when: [{{key: "request.headers[x-block]", values: ["*"]}}]
  - when: [{{key: connection.sni, values: ["evil.example"]}}]
  - when: [{{key: destination.ip, values: ["10.9.9.0/24"]}}]
  - when: [{{key: "request.auth.claims[groups]", values: ["group2"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: web-jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: {json.dumps((SAMPLES / "jwks.json").read_text())}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: web-allow, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/*"]}}}}]
  - to: [{{operation: {{paths: ["/public/*"], methods: ["GET"]}}}}]
"""


def hostile_config(directory: Path) -> list[Path]:
    """The files of the hostile tests' configuration, the extra one written to `directory`."""
    extra = directory / "hostile-extra.yaml"
    extra.write_text(EXTRA_POLICIES)
    return [SAMPLE_POLICIES, extra]


# --- `extauthz serve` as a child process ----------------------------------------------------


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process (or its peak, field VmHWM), in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no {field} in /proc/{pid}/status")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so after {timeout:g}s")
        time.sleep(0.02)


class ServeProcess(ProcessGroup):
    """`extauthz serve` for the sample gateway workload, a child process on free loopback
    ports, with its output (the decision lines included) in a file. `cwd` is where
    `python -m extauthz` finds the package (this checkout by default)."""

    def __init__(self, workdir: Path, configs: Sequence[Path], cwd: Path = REPO) -> None:
        self.workdir = workdir
        self.configs = list(configs)
        self.cwd = cwd
        self.log_file = workdir / "extauthz.log"
        self.grpc_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.grpc_port:
            self.http_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.processes = {}

    def start(self) -> Self:
        argv = [sys.executable, "-m", "extauthz", "serve"]
        for config in self.configs:
            argv += ["--config", str(config)]
        argv += [
            "--namespace", GATEWAY_NAMESPACE, "--labels", GATEWAY_LABELS,
            "--grpc-addr", self.grpc_target, "--http-addr", f"127.0.0.1:{self.http_port}",
            "--watch-interval", "0", "--decision-log", "all",  # lines for allows too
        ]  # fmt: skip
        process = Process("extauthz", argv, self.workdir, cwd=self.cwd, drop_env_prefix="EXTAUTHZ_")
        self.processes = {"extauthz": process}
        process.start()
        process.wait_until(answers_200(f"http://127.0.0.1:{self.http_port}/readyz"), 30)
        return self

    @property
    def pid(self) -> int:
        return self.processes["extauthz"].pid

    @property
    def is_running(self) -> bool:
        return "extauthz" in self.processes and self.processes["extauthz"].is_running

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def peak_rss_mib(self) -> float:
        return rss_mib(self.pid, "VmHWM")

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def decision_lines(self) -> list[dict[str, Any]]:
        """The JSON decision lines written so far (bare JSON lines on stderr)."""
        return [
            json.loads(line) for line in self.log_text().splitlines() if line.startswith('{"time":')
        ]

    def metric(self, name: str) -> float:
        """One unlabelled sample of /metrics (0 when absent)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return 0.0


# --- tokens a hostile client sends ----------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sample_key() -> Any:
    return serialization.load_pem_private_key((SAMPLES / "key.pem").read_bytes(), None)


def _forged_tokens() -> dict[str, str]:
    """Tokens that must never verify, and two properly signed ones outside their time."""
    header, payload, signature = DEMO.split(".")
    kid = json.loads((SAMPLES / "jwks.json").read_text())["keys"][0]["kid"]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    public_pem = (
        _sample_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    confused = hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    other_sub = _b64(json.dumps({**claims, "sub": "admin"}).encode())

    def signed(**times: int) -> str:
        return mint({"iss": ISSUER, "sub": ISSUER, "foo": "bar", **times}, kid=kid)

    return {
        "alg-none": f"{none_header}.{payload}.",
        "alg-none-demo-signature": f"{none_header}.{payload}.{signature}",
        "hs256-with-public-key": f"{hs_header}.{payload}.{_b64(confused)}",
        "claims-swapped": f"{header}.{other_sub}.{signature}",
        "expired": signed(iat=900_000_000, exp=1_000_000_000),
        "not-yet-valid": signed(iat=4_000_000_000, nbf=4_000_000_000, exp=4_100_000_000),
    }


FORGED = _forged_tokens()
TOKENS = {"none": "", "demo": DEMO, "groups": GROUPS}


# --- hostile requests ---------------------------------------------------------------------

SIZES = (0, 1, 255, 4095, 4096, 4097, 8191, 8193, 65_536, 262_144)
ODD = (
    "\x00", "\x01", "\x7f", "%", "%00", "%2e%2e", "%2F", "%5C", "%zz", "%%", "..", "../", "/./",
    "//", "?", "#", ";", "\\", " ", "\t", "\r\n", "é", "\u2028", "\ufeff", "\U0001f600", "*",
    ",", "=", "&", "\"", "'", "<", "@", ":",
)  # fmt: skip
PATHS = (
    "/productpage", "/api/v1/products/0", "/api/v1/products/1", "/", "/public/x",
    "/productpage/", "//productpage", "/./productpage", "/productpage/.", "/productpage/..",
    "/productpage/../api/v1/products/0", "/api/v1/products/0/../../../productpage",
    "/productpage%2F..%2Fapi/v1/products/0", "/%70roductpage", "/productpage%00",
    "/productpage;x=1", "/productpage?x=1", "/productpage#frag", "/productpage?#", "productpage",
    "", "*", "/PRODUCTPAGE", "/productpage\\..\\api", "/prodüctpage", "/productpage\t",
    "/product page", "/api/v1/products/0?access_token=x&access_token=y",
    "/productpage?access_token=", "http://gw.example/productpage", "/public/../api/v1/products/0",
)  # fmt: skip
IPS = (
    "", "127.0.0.1", "203.0.113.7", "198.51.100.9", "10.9.9.9", "2001:db8::1", "::1",
    "::ffff:203.0.113.7", "fe80::1%lo", "999.1.1.1", "1.2.3", "01.02.03.04", "localhost",
    "203.0.113.7/24", "::zz", " 127.0.0.1", "1.1.1.1, 2.2.2.2", "é",
)  # fmt: skip
PORTS = (0, 1, 80, 8080, 8443, 65_535, 65_536, 4_294_967_295)
HEADER_NAMES = (
    "x-block", "X-Block", "authorization", "Authorization", "AUTHORIZATION", " authorization",
    "authorization ", "x-forwarded-for", "cookie", ":path", ":authority", ":method", "",
    "ünïcode", "x-request-id", "content-length", "x\x00y",
)  # fmt: skip


def _some(rng: random.Random, pieces: Sequence[str]) -> str:
    return pieces[rng.randrange(len(pieces))]


def huge(rng: random.Random, piece: str = "a") -> str:
    """A value of one of SIZES characters: `piece` repeated, with an odd piece somewhere."""
    size = _some_size(rng)
    text = (piece * (size // max(len(piece), 1) + 1))[:size]
    return oddly(rng, text, times=1)[:size] if size else text


def _some_size(rng: random.Random) -> int:
    return SIZES[rng.randrange(len(SIZES))]


def oddly(rng: random.Random, text: str, times: int = 3) -> str:
    """`text` with one to `times` odd pieces inserted at random places."""
    for _ in range(rng.randint(1, times)):
        at = rng.randint(0, len(text))
        text = text[:at] + _some(rng, ODD) + text[at:]
    return text


def hostile_token(rng: random.Random) -> tuple[str, str]:
    """(name, token): a forged or damaged token, or a good one."""
    name = _some(rng, ("demo", "groups", "truncated", "bit-flipped", "extra-dots", "huge",
                       "empty", "odd", *FORGED))  # fmt: skip
    if name in FORGED:
        return name, FORGED[name]
    if name in TOKENS:
        return name, TOKENS[name]
    token = DEMO
    if name == "truncated":
        return name, token[: rng.randrange(len(token))]
    if name == "bit-flipped":
        at = rng.randrange(len(token))
        return name, token[:at] + chr(ord(token[at]) ^ (1 << rng.randrange(6))) + token[at + 1 :]
    if name == "extra-dots":
        at = rng.randint(0, len(token))
        return name, token[:at] + "." * rng.randint(1, 3) + token[at:]
    if name == "huge":
        return name, f"{token}{huge(rng, 'A')}"
    if name == "odd":
        return name, oddly(rng, token)
    return name, ""


def _set_pseudo(rng: random.Random, request: Any, field: str, header: str, value: str) -> str:
    """Set the value in the http field, in the pseudo-header, or in both (they may differ)."""
    http = request.attributes.request.http
    where = _some(rng, ("both", "field", "header"))
    if where in ("both", "field"):
        setattr(http, field, value)
    if where in ("both", "header"):
        http.headers[header] = value
    return where


def _method(rng: random.Random, request: Any) -> str:
    value = _some(rng, ("GET", "POST", "DELETE", "OPTIONS", "HEAD", "CONNECT", "get", "",
                        "G\x00T", "GÉT", "GET GET"))  # fmt: skip
    if rng.random() < 0.1:
        value = huge(rng, "GET")
    return f"method:{_set_pseudo(rng, request, 'method', ':method', value)}={value[:20]!r}"


def _path(rng: random.Random, request: Any) -> str:
    value = _some(rng, PATHS)
    roll = rng.random()
    if roll < 0.3:
        value = oddly(rng, value or "/")
    elif roll < 0.4:
        value = f"{value or '/'}{huge(rng, _some(rng, ('a', '/..', '%2e', '/')))}"
    return f"path:{_set_pseudo(rng, request, 'path', ':path', value)}={value[:40]!r}"


def _host(rng: random.Random, request: Any) -> str:
    value = _some(rng, ("", "GW.EXAMPLE", "gw.example:80", "gw.example.", "blocked.example",
                        "BLOCKED.example:8443", "évil.example", "a\x00b", "[::1]:80", "*"))  # fmt: skip
    if rng.random() < 0.1:
        value = huge(rng, "h.")
    return f"host:{_set_pseudo(rng, request, 'host', ':authority', value)}={value[:30]!r}"


def _header(rng: random.Random, request: Any) -> str:
    name = _some(rng, HEADER_NAMES)
    value = _some(rng, ("", "1", "Bearer " + DEMO, "bearer " + DEMO, "Basic YTpi", "ünïcode",
                        "a\x00b", "\r\n", "x" * 100))  # fmt: skip
    if rng.random() < 0.3:
        value = huge(rng, _some(rng, ("v", "é", ", ")))
    request.attributes.request.http.headers[name] = value
    return f"header:{name!r}={value[:20]!r}"


def _token(rng: random.Random, request: Any) -> str:
    name, token = hostile_token(rng)
    http = request.attributes.request.http
    where = _some(rng, ("header", "header", "query", "both", "two-in-header", "scheme"))
    if where in ("header", "both"):
        http.headers["authorization"] = f"Bearer {token}"
    if where == "two-in-header":
        http.headers["authorization"] = f"Bearer {token}, Bearer {DEMO}"
    if where == "scheme":
        scheme = _some(rng, ("bearer", "BEARER", "Bearer ", "Bearer\t", "Basic", "", "Bearer"))
        http.headers["authorization"] = f"{scheme} {token}"
    if where in ("query", "both"):
        path = http.path or "/"
        http.path = f"{path}{'&' if '?' in path else '?'}access_token={token}"
        http.headers[":path"] = http.path
    return f"token:{name}-in-{where}"


def _forwarded_for(rng: random.Random, request: Any) -> str:
    addresses = [_some(rng, IPS) for _ in range(rng.randint(1, 4))]
    value = ", ".join(addresses) if rng.random() < 0.9 else huge(rng, "1.2.3.4, ")
    request.attributes.request.http.headers["x-forwarded-for"] = value
    return f"xff={value[:40]!r}"


def _peer(rng: random.Random, request: Any) -> str:
    side = _some(rng, ("source", "destination"))
    peer = getattr(request.attributes, side)
    if rng.random() < 0.1:
        peer.address.pipe.path = "/tmp/envoy.sock"
        return f"{side}:pipe"
    address = _some(rng, IPS) if rng.random() < 0.9 else huge(rng, "1.")
    peer.address.socket_address.address = address
    peer.address.socket_address.port_value = PORTS[rng.randrange(len(PORTS))]
    return f"{side}={address[:30]!r}:{peer.address.socket_address.port_value}"


def _principal(rng: random.Random, request: Any) -> str:
    value = _some(rng, ("", "*", "spiffe://cluster.local/ns/evil/sa/x",
                        "spiffe://cluster.local/ns/EVIL/sa/x", "spiffe://cluster.local/ns/evil",
                        "spiffe://cluster.local/ns/istio-system/sa/gw", "ünïcode"))  # fmt: skip
    if rng.random() < 0.1:
        value = huge(rng, "spiffe://")
    request.attributes.source.principal = value
    return f"principal={value[:30]!r}"


def _sni(rng: random.Random, request: Any) -> str:
    value = _some(rng, ("", "evil.example", "EVIL.example", "evil.example.", "gw.example", "é"))
    if rng.random() < 0.1:
        value = huge(rng, "s")
    request.attributes.tls_session.sni = value
    return f"sni={value[:30]!r}"


def _extensions(rng: random.Random, request: Any) -> str:
    extensions = request.attributes.context_extensions
    steps = []
    if rng.random() < 0.7:
        namespace = _some(rng, ("", "foo", "istio-system", "bar", "FOO", "é", "a" * 64))
        if rng.random() < 0.2:
            namespace = huge(rng, "n")
        extensions["namespace"] = namespace
        steps.append(f"namespace={namespace[:20]!r}({len(namespace)})")
    if rng.random() < 0.8:
        labels = _some(rng, ("app=web", "app=istio-ingressgateway", "app=web,version=v1",
                             "", "a,b", "=x", "app", "app==web", ",,,", "app=web,app=other",
                             "app = web", "é=ü"))  # fmt: skip
        roll = rng.random()
        if roll < 0.2:
            labels = huge(rng, "k=v,")
        elif roll < 0.3:
            labels = oddly(rng, labels)
        extensions["labels"] = labels
        steps.append(f"labels={labels[:20]!r}({len(labels)})")
    if rng.random() < 0.2:
        extensions[_some(rng, ("other", "", "Namespace", "LABELS"))] = huge(rng, "x")
        steps.append("other-extension")
    return "extensions:" + ",".join(steps)


def _header_map(rng: random.Random, request: Any) -> str:
    """Envoy's encode_raw_headers: header_map (raw bytes allowed) instead of headers."""
    http = request.attributes.request.http
    pairs = sorted(http.headers.items())  # a map's order may differ from run to run
    http.ClearField("headers")
    if rng.random() < 0.5:
        pairs.append((_some(rng, ("Authorization", "AUTHORIZATION", "x-block")), "Bearer x"))
    for key, value in pairs:
        header = http.header_map.headers.add()
        header.key = key
        if rng.random() < 0.5:
            header.value = value
        else:
            header.raw_value = value.encode() + (b"\xff\xfe" if rng.random() < 0.3 else b"")
    return f"header-map:{len(pairs)}"


def _drop(rng: random.Random, request: Any) -> str:
    """Take away a part Envoy always sends."""
    attributes = request.attributes
    http = attributes.request.http
    what = _some(rng, ("path", "method", "host", "headers", "request", "source", "destination",
                       "attributes", "scheme"))  # fmt: skip
    targets: dict[str, tuple[Any, str]] = {
        "path": (http, "path"), "method": (http, "method"), "host": (http, "host"),
        "headers": (http, "headers"), "request": (attributes, "request"),
        "source": (attributes, "source"), "destination": (attributes, "destination"),
        "attributes": (request, "attributes"), "scheme": (http, "scheme"),
    }  # fmt: skip
    owner, field = targets[what]
    owner.ClearField(field)
    return f"drop:{what}"


def _query(rng: random.Random, request: Any) -> str:
    http = request.attributes.request.http
    param = _some(rng, ("access_token=", "access_token=x", "access_token=%41", "access_token",
                        "ACCESS_TOKEN=" + DEMO, "access%5Ftoken=" + DEMO, "a=1&&&b", "%",
                        "access_token=" + DEMO + "&access_token=x"))  # fmt: skip
    path = http.path or "/"
    http.path = f"{path}{'&' if '?' in path else '?'}{param}"
    http.headers[":path"] = http.path
    return f"query:{param[:30]!r}"


def _wire_flip(rng: random.Random, request: Any) -> str:
    """Flip a few bits of the serialized request; keep the result if it still parses."""
    data = bytearray(request.SerializeToString(deterministic=True))
    if not data:
        return "wire-flip:empty"
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    flipped = external_auth_pb2.CheckRequest()
    try:
        flipped.ParseFromString(bytes(data))
    except DecodeError:
        return "wire-flip:unparseable"
    request.CopyFrom(flipped)
    return "wire-flip:parsed"


MUTATIONS: dict[str, Callable[[random.Random, Any], str]] = {
    "method": _method, "path": _path, "host": _host, "header": _header, "token": _token,
    "xff": _forwarded_for, "peer": _peer, "principal": _principal, "sni": _sni,
    "extensions": _extensions, "header-map": _header_map, "drop": _drop, "query": _query,
    "wire-flip": _wire_flip,
}  # fmt: skip
MUTATION_NAMES = tuple(MUTATIONS)


@dataclass(frozen=True)
class Hostile:
    """A CheckRequest and the steps that made it, e.g. `base:/productpage:demo-in-header`,
    `path:field='/productpage/..'`, `labels='a,b'(3)`."""

    request: external_auth_pb2.CheckRequest
    steps: tuple[str, ...]

    def __str__(self) -> str:
        return " | ".join(self.steps)


def hostile_request(rng: random.Random, max_mutations: int = 4) -> Hostile:
    """A request of the sample scenario (any path, with or without a token, in the header
    or the query), then up to `max_mutations` random mutations; rarely an empty request."""
    if rng.random() < 0.02:
        return Hostile(external_auth_pb2.CheckRequest(), ("empty-request",))
    path = _some(rng, PATHS[:5])
    token_name = _some(rng, ("none", "demo", "demo", "groups"))
    where = _some(rng, ("header", "query"))
    request = sample_request(path, TOKENS[token_name], where)
    steps = [f"base:{path}:{token_name}-in-{where}"]
    for _ in range(rng.randint(0, max_mutations)):
        steps.append(MUTATIONS[_some(rng, MUTATION_NAMES)](rng, request))
    return Hostile(request, tuple(steps))


def hostile_requests(seed: int, count: int) -> Iterator[Hostile]:
    rng = random.Random(seed)
    for _ in range(count):
        yield hostile_request(rng)


def mutated(rng: random.Random, hostile: Hostile) -> Hostile:
    """A neighbour of `hostile`: a copy with one more mutation (most of a memo key shared)."""
    request = external_auth_pb2.CheckRequest()
    request.CopyFrom(hostile.request)
    step = MUTATIONS[_some(rng, MUTATION_NAMES)](rng, request)
    return Hostile(request, (*hostile.steps, f"then {step}"))

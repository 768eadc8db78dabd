"""Silent, slow and idle connections to `extauthz serve` are bounded (issue 12, item 6).

One real server with short limits serves the whole file. Each test starts once the server
holds no client connection, and measures what the server process holds from /proc: the
attacker's measure, file descriptors, not the client's view.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.cli import main
from extauthz.rig.processes import Process, answers_200, free_port
from extauthz.server.connections import ConnectionLimits, GuardedSite, grpc_server_options
from tests.reliability.support import wait_for

GRPC_CAP = 20
ADMIN_CAP = 20
HANDSHAKE_SECONDS = 0.5  # before a dead peer's keepalive close (1 s), which also hits it
IDLE_SECONDS = 2.0
SERVER_FLAGS = (
    "--grpc-handshake-timeout", str(HANDSHAKE_SECONDS),
    "--grpc-keepalive-time", "0.5",
    "--grpc-keepalive-timeout", "0.5",
    "--grpc-max-connection-idle", str(IDLE_SECONDS),
    "--grpc-min-client-ping-interval", "0.2",
    "--grpc-max-connections", str(GRPC_CAP),
    "--admin-header-timeout", "1",
)  # fmt: skip
# One limit comes from the environment, as a Deployment would set it.
SERVER_ENV = {"EXTAUTHZ_ADMIN_MAX_CONNECTIONS": str(ADMIN_CAP)}
# Long enough for any of the server's 1-2 s limits to act, far below the defaults they
# replace (grpc-core: 120 s handshakes, 2 h keepalive; aiohttp: 3630 s keep-alive).
CLOSE_DEADLINE = 4.0
# Accepting a connection over the cap takes a descriptor for a moment, before the close.
FDS_IN_PASSING = 3

ALLOW_ALL = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: foo}
spec: {rules: [{}]}
"""


@dataclass(frozen=True)
class Server:
    pid: int
    grpc_port: int
    http_port: int

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def held(self, port: int) -> int:
        """Connections to `port` the server process still has a descriptor for."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except FileNotFoundError:  # closed while we looked
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        held = 0
        # grpc-core listens on an IPv6 socket even for 127.0.0.1 (v4-mapped addresses).
        tables = (Path(f"/proc/{self.pid}/net/{name}").read_text() for name in ("tcp", "tcp6"))
        for line in (line for table in tables for line in table.splitlines()[1:]):
            columns = line.split()
            local_port = int(columns[1].rsplit(":", 1)[1], 16)
            is_listening = columns[3] == "0A"
            if local_port == port and not is_listening and columns[9] in inodes:
                held += 1
        return held

    def holds_nothing(self) -> bool:
        return self.held(self.grpc_port) == 0 and self.held(self.http_port) == 0


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("connections")
    (workdir / "policy.yaml").write_text(ALLOW_ALL)
    grpc_port, http_port = free_port(), free_port()
    argv = [sys.executable, "-m", "extauthz", "serve", "--config", str(workdir / "policy.yaml"),
            "--namespace", "foo", "--grpc-addr", f"127.0.0.1:{grpc_port}",
            "--http-addr", f"127.0.0.1:{http_port}", "--watch-interval", "0",
            "--decision-log", "none", *SERVER_FLAGS]  # fmt: skip
    process = Process("extauthz", argv, workdir, env=SERVER_ENV)
    process.start()
    try:
        process.wait_until(answers_200(f"http://127.0.0.1:{http_port}/readyz"))
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as ready:
            pid = int(json.load(ready)["pid"])
        yield Server(pid, grpc_port, http_port)
    finally:
        process.stop()


@pytest.fixture
def server(started: Server) -> Server:
    """The shared server, once the previous test's connections are gone."""
    wait_for(started.holds_nothing, "the server let go of the previous test's connections")
    return started


def connect(port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def read_until_closed(sock: socket.socket, timeout: float, drip: bytes = b"") -> bytes:
    """Everything the server sends until it closes; `drip` is sent every 0.2 s meanwhile."""
    received = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(min(left, 0.2))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if drip:
                with contextlib.suppress(OSError):  # closed under us: the next recv says so
                    sock.sendall(drip)
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection for {timeout:g}s")


def is_closed_by_server(sock: socket.socket) -> bool:
    """Without waiting: has the server closed (any unread data is dropped)?"""
    sock.setblocking(False)
    try:
        while chunk := sock.recv(65536):
            del chunk
        return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


# --- gRPC: HTTP/2 by hand, to control exactly what a client says ----------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


def frame(kind: int, flags: int = 0, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags, 0, 0, 0, 0]) + payload


class Http2Peer:
    """A client that completes the HTTP/2 handshake and makes no call: it answers the
    server's SETTINGS and pings, or (a peer that vanished without a FIN) answers nothing."""

    def __init__(self, port: int, *, is_alive: bool) -> None:
        self.sock = connect(port, PREFACE + frame(SETTINGS))
        self.is_alive = is_alive
        self.pings_received = 0
        self.goaway_reason: str | None = None
        self.is_closed = False
        self._buffer = b""

    def ping(self) -> None:
        self.sock.sendall(frame(PING, payload=b"extauthz"))

    def close(self) -> None:
        self.sock.close()

    def run(self, seconds: float) -> None:
        """Read (and answer) frames for `seconds`, or until the server closes."""
        deadline = time.monotonic() + seconds
        while not self.is_closed and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return
            except ConnectionResetError:
                chunk = b""
            self.is_closed = not chunk
            self._buffer += chunk
            self._read_frames()

    def _read_frames(self) -> None:
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            payload, self._buffer = self._buffer[9 : 9 + length], self._buffer[9 + length :]
            if kind == PING and not flags & ACK:
                self.pings_received += 1
            if kind == GOAWAY:
                self.goaway_reason = payload[8:].decode()  # after last-stream-id, error code
            if self.is_alive and kind == SETTINGS and not flags & ACK:
                self.sock.sendall(frame(SETTINGS, ACK))
            if self.is_alive and kind == PING and not flags & ACK:
                self.sock.sendall(frame(PING, ACK, payload))


def health_check(port: int, timeout: float = 1.0) -> grpc.StatusCode:
    # A channel of its own: grpc shares connections between channels to one address.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    "first_bytes",
    [b"", b"PRI * HTTP/2.0\r\n"],
    ids=["sends-nothing", "half-a-preface"],
)
def test_grpc_closes_a_connection_that_never_finishes_the_handshake(
    server: Server, first_bytes: bytes
) -> None:
    with connect(server.grpc_port, first_bytes) as sock:
        received = read_until_closed(sock, CLOSE_DEADLINE)
    # Keepalive and idle close such a connection too, later and with their own reasons.
    assert received.endswith(b"Did not receive HTTP/2 settings before handshake timeout")
    wait_for(lambda: server.held(server.grpc_port) == 0, "the server let go of it", CLOSE_DEADLINE)


def test_grpc_closes_a_peer_that_leaves_pings_unanswered(server: Server) -> None:
    with contextlib.closing(Http2Peer(server.grpc_port, is_alive=False)) as peer:
        peer.run(CLOSE_DEADLINE)
    assert peer.is_closed
    assert peer.pings_received >= 1
    assert peer.goaway_reason == "ping_timeout"


def test_grpc_keeps_a_peer_that_answers_pings_until_it_idles_out(server: Server) -> None:
    with contextlib.closing(Http2Peer(server.grpc_port, is_alive=True)) as peer:
        peer.run(IDLE_SECONDS * 0.75)
        assert not peer.is_closed
        assert peer.pings_received >= 2  # keepalive every 0.5 s, answered, so the peer stays
        peer.run(CLOSE_DEADLINE)
    assert peer.is_closed
    assert peer.goaway_reason == "connection idle"


def test_grpc_accepts_client_pings_as_often_as_permitted(server: Server) -> None:
    # grpc-core's default answers the third ping within 5 minutes on a connection without
    # calls with GOAWAY too_many_pings; Envoy's connection_keepalive pings like this.
    with contextlib.closing(Http2Peer(server.grpc_port, is_alive=True)) as peer:
        for _ in range(6):
            peer.ping()
            peer.run(0.25)
    assert peer.goaway_reason is None
    assert not peer.is_closed


def test_grpc_closes_a_channel_idle_after_its_call(server: Server) -> None:
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert server.held(server.grpc_port) == 1
        # grpc-core's idle timer, when it finds a call since it was set, waits a whole period
        # again: the connection goes between one and two periods after its last call.
        wait_for(
            lambda: server.held(server.grpc_port) == 0,
            "the idle connection was closed",
            timeout=2 * IDLE_SECONDS + 1.5,
        )


def test_grpc_keeps_a_channel_that_keeps_calling(server: Server) -> None:
    states: list[grpc.ChannelConnectivity] = []
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel:
        channel.subscribe(states.append, try_to_connect=True)
        check = health_pb2_grpc.HealthStub(channel).Check
        stop = time.monotonic() + IDLE_SECONDS * 1.25
        while time.monotonic() < stop:
            check(health_pb2.HealthCheckRequest(), timeout=2)
            assert server.held(server.grpc_port) == 1
            time.sleep(0.2)  # the pause between calls, not a wait for readiness
        channel.unsubscribe(states.append)
    after_ready = states[states.index(grpc.ChannelConnectivity.READY) :]
    assert set(after_ready) == {grpc.ChannelConnectivity.READY}  # never reconnected


def test_grpc_caps_connections_and_frees_the_slots(server: Server) -> None:
    peers = [Http2Peer(server.grpc_port, is_alive=True) for _ in range(GRPC_CAP + 5)]
    try:
        wait_for(
            lambda: sum(is_closed_by_server(p.sock) for p in peers) == 5,
            "the connections over the cap were closed",
            timeout=0.5,  # at once, long before any timer of the server's could act
        )
        assert server.held(server.grpc_port) == GRPC_CAP
        assert health_check(server.grpc_port, timeout=0.5) == grpc.StatusCode.UNAVAILABLE
    finally:
        for peer in peers:
            peer.close()
    wait_for(
        lambda: health_check(server.grpc_port) == grpc.StatusCode.OK,
        "a Check after the cap",
        CLOSE_DEADLINE,
    )


def test_grpc_silent_connections_cost_at_most_the_cap_in_descriptors(server: Server) -> None:
    before = server.fds()
    most = before
    socks = []
    try:
        for _ in range(300):
            socks.append(connect(server.grpc_port))
            most = max(most, server.fds())
        wait_for(
            lambda: all(is_closed_by_server(s) for s in socks), "all were closed", CLOSE_DEADLINE
        )
    finally:
        for sock in socks:
            sock.close()
    assert most <= before + GRPC_CAP + FDS_IN_PASSING
    wait_for(
        lambda: server.fds() <= before,
        "the server's descriptors are back where they were",
        CLOSE_DEADLINE,
    )


# --- the admin port ---------------------------------------------------------------------

HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
HALF_HEAD = b"GET /readyz HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("first_bytes", "drip", "answered"),
    [
        (b"", b"", b""),
        (HALF_HEAD, b"", b""),
        (b"GET /readyz HTTP/1.1\r\n", b"X-Drip: 1\r\n", b""),
        (HEAD + HALF_HEAD, b"", b"HTTP/1.1 200 OK"),
    ],
    ids=["sends-nothing", "half-sent-head", "head-dripping-in", "second-head-half-sent"],
)
def test_admin_closes_a_connection_without_a_complete_head(
    server: Server, first_bytes: bytes, drip: bytes, answered: bytes
) -> None:
    with connect(server.http_port, first_bytes) as sock:
        received = read_until_closed(sock, CLOSE_DEADLINE, drip)
    assert received.startswith(answered)
    wait_for(lambda: server.held(server.http_port) == 0, "the server let go of it", CLOSE_DEADLINE)


def test_admin_closes_a_body_that_nobody_reads(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    with connect(server.http_port, head) as sock:
        received = read_until_closed(sock, CLOSE_DEADLINE, drip=b"x" * 10)
    assert received.startswith(b"HTTP/1.1 200 OK")


def test_admin_answers_probes_while_300_heads_hang(server: Server) -> None:
    socks = [connect(server.http_port, HALF_HEAD) for _ in range(300)]
    try:
        for path in ("/healthz", "/metrics"):
            with urllib.request.urlopen(
                f"http://127.0.0.1:{server.http_port}{path}", timeout=1
            ) as answer:
                assert answer.status == 200
        assert server.held(server.http_port) <= ADMIN_CAP
        wait_for(
            lambda: all(is_closed_by_server(s) for s in socks),
            "all the hanging heads closed",
            CLOSE_DEADLINE,
        )
    finally:
        for sock in socks:
            sock.close()


def test_admin_closes_connections_over_the_cap_at_once(server: Server) -> None:
    # Connections that sent a request are not displaced; only silent ones are.
    kept = [http.client.HTTPConnection("127.0.0.1", server.http_port) for _ in range(ADMIN_CAP)]
    try:
        for connection in kept:
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b"ok\n"
        with connect(server.http_port) as one_more:
            read_until_closed(one_more, timeout=0.5)  # at once: the header timeout is 1 s
        assert server.held(server.http_port) == ADMIN_CAP
    finally:
        for connection in kept:
            connection.close()


def test_admin_serves_a_keep_alive_client(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port)
    try:
        local_ports = set()
        for path in ("/healthz", "/metrics", "/readyz", "/healthz", "/metrics"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert connection.sock is not None
            local_ports.add(connection.sock.getsockname()[1])
        assert len(local_ports) == 1  # one connection for all five
    finally:
        connection.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_admin_serves_a_probe_that_closes(server: Server, request_bytes: bytes) -> None:
    with connect(server.http_port, request_bytes) as sock:
        received = read_until_closed(sock, timeout=1)
    assert received.split(b"\r\n")[0].endswith(b" 200 OK")
    assert received.endswith(b"\r\n\r\nok\n")


def test_admin_first_head_deadline_does_not_need_aiohttps_keep_alive() -> None:
    """Older aiohttp releases start no keep-alive timer before the first request; the
    guard's own deadline closes a silent first head whatever aiohttp does."""

    async def scenario() -> bytes:
        app = web.Application()
        runner = web.AppRunner(app, keepalive_timeout=3600)  # aiohttp's timer: out of play
        await runner.setup()
        limits = ConnectionLimits(admin_header_timeout_seconds=0.5)
        site = GuardedSite(runner, "127.0.0.1", 0, limits)
        await site.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            writer.write(HALF_HEAD)
            received = await asyncio.wait_for(reader.read(), CLOSE_DEADLINE)
            writer.close()
            return received
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == b""  # closed, nothing answered


# --- flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "option", "expected"),
    [
        (ConnectionLimits(), "grpc.max_allowed_incoming_connections", 512),
        (ConnectionLimits(grpc_max_connections=0), "grpc.max_allowed_incoming_connections", None),
        (ConnectionLimits(), "grpc.max_connection_idle_ms", 300_000),
        (ConnectionLimits(grpc_max_connection_idle_seconds=0), "grpc.max_connection_idle_ms", None),
        (ConnectionLimits(grpc_keepalive_timeout_seconds=7), "grpc.http2.ping_timeout_ms", 7000),
    ],
    ids=[
        "cap-default",
        "cap-off",
        "idle-default",
        "idle-off",
        "ping-timeout-follows-keepalive-timeout",
    ],
)
def test_grpc_server_options(limits: ConnectionLimits, option: str, expected: int | None) -> None:
    assert dict(grpc_server_options(limits)).get(option) == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc-max-connections", "-1"], "--grpc-max-connections must be 0 or more, not -1"),
        (["--grpc-handshake-timeout", "0"], "--grpc-handshake-timeout must be more than 0, not 0"),
        (["--admin-header-timeout", "-2"], "--admin-header-timeout must be more than 0, not -2"),
    ],
    ids=["negative-cap", "zero-handshake-timeout", "negative-header-timeout"],
)
def test_serve_refuses_limits_out_of_range(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["serve", "--config", "unused.yaml", *flags]) == 2
    assert capsys.readouterr().err.strip() == f"extauthz: {message}"

"""Bounds on connections to both ports: gRPC channel options, and a guarded admin HTTP site.

Anyone who can reach a port can open connections and then send nothing, or send a request
head a byte at a time (slowloris). Unbounded, each such connection holds a file descriptor
for as long as its sender likes. Here every connection gets a deadline to say something
useful, and each port a cap on the connections it holds at once.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, fields
from typing import TypedDict

from aiohttp import web

# The end of an HTTP/1 request head; aiohttp's parser also takes bare newlines.
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
# Limits where 0 turns the bound off; every other one must be positive.
_MAY_BE_ZERO = frozenset(
    ("grpc_max_connections", "grpc_max_connection_idle_seconds", "admin_max_connections")
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Defaults fit a sidecar: Envoy keeps one long-lived HTTP/2 connection per worker
    thread to the gRPC port, and reconnects at once if one is closed; kubelet probes and
    Prometheus scrapes make short HTTP/1.1 requests to the admin port."""

    # Connections held at once, counted from accept (handshakes too); more are closed at
    # once. Far above Envoy's one per worker, far below a file descriptor limit. 0: no cap.
    grpc_max_connections: int = 512
    # A connection without any RPC for this long is sent GOAWAY; Envoy reconnects on its
    # next Check, so this only costs an idle sidecar one handshake. 0: never.
    grpc_max_connection_idle_seconds: float = 300.0
    # The server pings a connection quiet for this long, and closes it if the ping is not
    # answered within the timeout: a peer that vanished without a FIN.
    grpc_keepalive_time_seconds: float = 60.0
    grpc_keepalive_timeout_seconds: float = 20.0
    # From accept until the client's HTTP/2 preface and SETTINGS (grpc-core waits 120 s).
    grpc_handshake_timeout_seconds: float = 10.0
    # Client pings on a connection without calls are welcome this often: grpc-core's
    # default (5 minutes) answers Envoy's own HTTP/2 keepalive with GOAWAY too_many_pings.
    grpc_min_client_ping_interval_seconds: float = 5.0
    # From accept, or from the end of the last response, until a complete request head;
    # also how long an unread request body is drained before the connection is closed.
    admin_header_timeout_seconds: float = 5.0
    # Admin connections held at once. Over it, a new connection replaces the oldest one
    # that has not sent a complete request head yet, else it is closed at once. 0: no cap.
    admin_max_connections: int = 64

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            may_be_zero = field.name in _MAY_BE_ZERO
            if value < 0 or (value == 0 and not may_be_zero):
                flag = "--" + field.name.removesuffix("_seconds").replace("_", "-")
                least = "0 or more" if may_be_zero else "more than 0"
                raise ValueError(f"{flag} must be {least}, not {value:g}")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def grpc_server_options(limits: ConnectionLimits) -> list[tuple[str, int]]:
    """Channel arguments for `grpc.aio.server(options=...)`."""
    keepalive_timeout = _ms(limits.grpc_keepalive_timeout_seconds)
    options = [
        ("grpc.server_handshake_timeout_ms", _ms(limits.grpc_handshake_timeout_seconds)),
        ("grpc.keepalive_time_ms", _ms(limits.grpc_keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", keepalive_timeout),
        # grpc-core (1.85) never arms keepalive_timeout on a server: an unanswered keepalive
        # ping is caught by the generic ping timeout instead, 60 s unless set. Same value.
        ("grpc.http2.ping_timeout_ms", keepalive_timeout),
        # Both directions at once: the server pings connections without calls (Envoy's idle
        # pool connection included), and accepts pings from clients without calls.
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(limits.grpc_min_client_ping_interval_seconds),
        ),
    ]
    if limits.grpc_max_connection_idle_seconds > 0:
        options.append(
            ("grpc.max_connection_idle_ms", _ms(limits.grpc_max_connection_idle_seconds))
        )
    if limits.grpc_max_connections > 0:
        options.append(("grpc.max_allowed_incoming_connections", limits.grpc_max_connections))
    return options


class AdminRunnerOptions(TypedDict):
    """aiohttp's own timers, for `web.AppRunner(...)`: keep-alive closes a connection whose
    next request head is not complete in time after a response (partial data does not
    extend it); lingering bounds reading a request body that no handler read."""

    keepalive_timeout: float
    lingering_time: float


def admin_runner_options(limits: ConnectionLimits) -> AdminRunnerOptions:
    timeout = limits.admin_header_timeout_seconds
    return AdminRunnerOptions(keepalive_timeout=timeout, lingering_time=timeout)


class _Gate:
    """The admin connections held at once, and which of them still owe a request head."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._open: set[_GuardedConnection] = set()
        self._awaiting_head: dict[_GuardedConnection, None] = {}  # oldest first

    def admit(self, connection: _GuardedConnection) -> bool:
        if self._cap and len(self._open) >= self._cap:
            if not self._awaiting_head:
                return False
            # A connection still silent after everyone else's head is most likely a
            # slowloris; replacing it keeps probes answering while an attack holds the cap.
            next(iter(self._awaiting_head)).drop()
        self._open.add(connection)
        self._awaiting_head[connection] = None
        return True

    def head_received(self, connection: _GuardedConnection) -> None:
        self._awaiting_head.pop(connection, None)

    def forget(self, connection: _GuardedConnection) -> None:
        self._open.discard(connection)
        self._awaiting_head.pop(connection, None)


class _GuardedConnection(asyncio.Protocol):
    """Sits between the socket and aiohttp's request handler: admits the connection past
    the gate, and closes it if its first request head is not complete by the deadline.
    Later heads are aiohttp's keep-alive timer's job (it starts at the end of a response,
    which only aiohttp knows). Older aiohttp releases had no timer for the first one."""

    def __init__(self, handler: asyncio.Protocol, gate: _Gate, header_timeout: float) -> None:
        self._handler = handler
        self._gate = gate
        self._header_timeout = header_timeout
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, for a head end split across reads
        self._is_admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._gate.admit(self):
            transport.close()  # over the cap: aiohttp never sees it
            return
        self._is_admitted = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._header_timeout, self.drop)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            seen = self._tail + data
            if any(end in seen for end in _HEAD_ENDS):
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
                self._gate.head_received(self)
            else:
                self._tail = seen[-3:]
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._gate.forget(self)
        if self._is_admitted:
            self._handler.connection_lost(exc)

    def drop(self) -> None:
        """Close a connection that never completed its first request head."""
        self._gate.forget(self)
        if self._transport is not None:
            self._transport.close()


class GuardedSite(web.BaseSite):
    """`web.TCPSite` with every connection behind a `_GuardedConnection`."""

    __slots__ = ("_host", "_limits", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ConnectionLimits,
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limits = limits
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The port really bound once started (useful with port 0)."""
        sockets: tuple[socket.socket, ...] = getattr(self._server, "sockets", ())
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite refuses a runner that was not set up
        gate = _Gate(self._limits.admin_max_connections)
        timeout = self._limits.admin_header_timeout_seconds
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedConnection(server(), gate, timeout),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )

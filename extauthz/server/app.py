"""Build the service once, run it, stop it cleanly: gRPC (Check + health) and HTTP admin."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extauthz.authn.cache import TokenCache
from extauthz.authn.jwks_fetcher import (
    DEFAULT_REFETCH_MIN_SECONDS,
    DEFAULT_REFRESH_SECONDS,
    JwksFetcher,
)
from extauthz.authn.key_store import DEFAULT_MAX_STALE_SECONDS, KeyStore
from extauthz.config.changes import changes
from extauthz.config.limits import ConfigLimits
from extauthz.config.parse import ConfigError
from extauthz.config.watch import ConfigWatcher
from extauthz.config.workload import Workload
from extauthz.server.admin import build_admin_app
from extauthz.server.collector import settle_after_start
from extauthz.server.connections import (
    ConnectionLimits,
    GuardedSite,
    admin_runner_options,
    grpc_server_options,
)
from extauthz.server.grpc_service import AuthorizationService
from extauthz.server.logs import BackgroundWriter, DecisionLogger, DecisionLogSettings
from extauthz.server.metrics import Metrics
from extauthz.snapshot.compile import Generation
from extauthz.snapshot.store import ConfigStore

log = logging.getLogger(__name__)
AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"


@dataclass(frozen=True, slots=True)
class GrpcTls:
    """TLS on the Check port: a certificate and key, and, when `client_ca_file` is given,
    client certificates required and verified against it (Envoy's cluster presents one)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Read the files now (start-up): an unreadable file is an OSError."""
        chain = _pem(self.cert_file, "--grpc-tls-cert", x509.load_pem_x509_certificates)
        key = _pem(self.key_file, "--grpc-tls-key", _private_key)
        roots = (
            _pem(self.client_ca_file, "--grpc-client-ca", x509.load_pem_x509_certificates)
            if self.client_ca_file
            else None
        )
        return grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=roots, require_client_auth=roots is not None
        )


def _private_key(data: bytes) -> object:
    return serialization.load_pem_private_key(data, password=None)


def _pem(path: str, flag: str, load: Callable[[bytes], object]) -> bytes:
    """A PEM file's bytes, checked to hold what the flag needs: one line, not a traceback
    from deep in gRPC, when it does not."""
    data = Path(path).read_bytes()
    try:
        load(data)
    except (ValueError, TypeError) as exc:
        raise OSError(f"{flag} {path}: {exc}") from exc
    return data


@dataclass(frozen=True, slots=True)
class Settings:
    config_paths: tuple[str, ...]
    grpc_addr: str = "0.0.0.0:9000"
    http_addr: str = "0.0.0.0:9090"
    workload: Workload = field(default_factory=lambda: Workload("default"))
    root_namespace: str = "istio-system"
    jwks_refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    jwks_refetch_min_seconds: float = DEFAULT_REFETCH_MIN_SECONDS
    jwks_max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS
    jwks_ca_file: str | None = None
    xff_num_trusted_hops: int = 0
    watch_interval_seconds: float = 1.0
    reuse_port: bool = False  # set for --workers: several processes share the ports
    decision_log: DecisionLogSettings = field(default_factory=DecisionLogSettings)
    drain_seconds: float = 5.0
    config_limits: ConfigLimits = field(default_factory=ConfigLimits)
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    grpc_tls: GrpcTls | None = None  # plaintext without
    payload_metadata: bool = False  # verified payloads in the dynamic metadata (jwt_payload)


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port`, `[::1]:port` or `:port` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{addr!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = ConfigStore(
            settings.config_paths,
            settings.workload,
            settings.root_namespace,
            settings.config_limits,
        )
        self.keys = KeyStore(settings.jwks_max_stale_seconds)
        self.metrics.watch_keys(self.keys)
        self.fetcher = JwksFetcher(
            self.keys,
            settings.jwks_refresh_seconds,
            on_result=lambda uri, result: self.metrics.jwks_fetches.labels(uri, result).inc(),
            refetch_min_seconds=settings.jwks_refetch_min_seconds,
            ca_file=settings.jwks_ca_file,
            on_refetch=lambda uri: self.metrics.jwks_refetches.labels(uri).inc(),
            max_keys=settings.config_limits.max_jwks_keys,
            strict_keys=settings.config_limits.strict_keys,
        )
        self.health = health.aio.HealthServicer()
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._is_serving = False
        self._reload_lock = asyncio.Lock()
        self._reload_again = False  # a reload was asked for while one ran
        self._log_writer: BackgroundWriter | None = None
        self.watcher = ConfigWatcher(
            settings.config_paths, self.reload, settings.watch_interval_seconds
        )
        self.grpc_port = 0  # the ports really bound (useful with port 0)
        self.http_port = 0

    def load_config(self) -> None:
        """The first load, at start-up (a bad configuration is fatal there)."""
        try:
            generation = self.store.build()
        except ConfigError as exc:
            self.metrics.config_reloads.labels("error").inc()
            self.store.reject(str(exc))
            raise
        assert generation is not None  # nothing serves yet, so nothing equals it
        self._serve_generation(generation)

    def _serve_generation(self, generation: Generation) -> None:
        previous = self.store.generation.config if self.store.is_loaded else None
        self.store.swap(generation)
        snapshot = self.store.current
        self._reload_succeeded()
        self.metrics.config_generation.set(snapshot.generation)
        log.info(
            "configuration generation %d applied (%s); for workload %s: %s",
            snapshot.generation,
            changes(previous, generation.config),
            snapshot.workload,
            ", ".join(snapshot.applied) or "no resource applies",
        )

    def _reload_succeeded(self) -> None:
        self.metrics.config_reloads.labels("ok").inc()
        self.metrics.config_last_reload_ok.set(1)

    def _rejected(self, error: str) -> None:
        self.metrics.config_reloads.labels("error").inc()
        self.metrics.config_last_reload_ok.set(0)
        serving = self.store.generation.number if self.store.is_loaded else "none"
        if self.store.reject(error):
            log.error("configuration rejected, still serving generation %s: %s", serving, error)
        else:
            log.debug("configuration still rejected (unchanged): %s", error)

    async def reload(self) -> None:
        """Build the next generation off the event loop, then swap it in. A rejected
        configuration is logged once and counted; the last good one keeps serving.

        Requests that arrive while a reload runs (SIGHUP and the watcher, say) become one
        more reload after it, not one each. A reload never holds the lock past the load
        timeout: a build still running then is abandoned (its result is dropped)."""
        if self._reload_lock.locked():
            self._reload_again = True
            return
        async with self._reload_lock:
            self._reload_again = True
            while self._reload_again:
                self._reload_again = False
                try:
                    await self._reload_once()
                except Exception as exc:  # a failed reload is one line, never a traceback
                    log.debug("reload failed", exc_info=True)
                    self._rejected(f"reload failed: {type(exc).__name__}: {exc}")

    async def _reload_once(self) -> None:
        timeout = self.store.limits.load_timeout_seconds
        try:
            # The build checks the same deadline itself; this one frees the lock regardless.
            generation = await asyncio.wait_for(asyncio.to_thread(self.store.build), timeout + 1)
        except ConfigError as exc:
            self._rejected(str(exc))
            return
        except TimeoutError:
            self._rejected(f"loading took longer than {timeout:g}s (--config-load-timeout)")
            return
        if generation is None:
            serving = self.store.generation.number
            if self.store.last_error:
                log.info("configuration files hold generation %d again; error cleared", serving)
                self.store.clear_error()
                self._reload_succeeded()
            else:
                log.info("configuration files unchanged; still serving generation %d", serving)
            return
        # Keys for new URIs are fetched before the swap, so no Check meets a rule whose
        # keys were never asked for.
        await self.fetcher.track(generation.jwks_sources)
        self._serve_generation(generation)

    async def start(self) -> None:
        if self.settings.decision_log.mode != "none" and self._log_writer is None:
            self._log_writer = BackgroundWriter()
        self.watcher.prime()
        self.load_config()  # at start-up a bad configuration is fatal (ConfigError)
        await self.fetcher.track(self.store.generation.jwks_sources)

        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", int(self.settings.reuse_port)),
                *grpc_server_options(self.settings.connection_limits),
            ]
        )
        authorization = AuthorizationService(
            self.store,
            self.keys,
            self.metrics,
            TokenCache(),
            self.fetcher.refetch,
            self.settings.xff_num_trusted_hops,
            DecisionLogger.of(self.settings.decision_log, self._log_writer),
            self.settings.payload_metadata,
        )
        self.metrics.watch_memo(authorization.memo)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authorization, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        host, port = split_addr(self.settings.grpc_addr)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        tls = self.settings.grpc_tls
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            try:
                bound = server.add_secure_port(address, tls.credentials())
            except RuntimeError as exc:  # gRPC refused the key pair
                raise OSError(f"cannot serve gRPC over TLS on {address}: {exc}") from exc
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self.settings.grpc_addr}")
        await server.start()
        self._grpc = server
        self.grpc_port = bound

        runner = web.AppRunner(
            build_admin_app(self.store, self.keys, self.metrics, lambda: self._is_serving),
            access_log=None,
            **admin_runner_options(self.settings.connection_limits),
        )
        await runner.setup()
        http_host, http_port = split_addr(self.settings.http_addr)
        site = GuardedSite(
            runner,
            http_host,
            http_port,
            self.settings.connection_limits,
            reuse_port=self.settings.reuse_port,
        )
        await site.start()
        self._http = runner
        self.http_port = site.port

        self._is_serving = True
        if self.settings.watch_interval_seconds > 0:
            self.watcher.start()
        for service in ("", AUTHORIZATION_SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving Check on %s, HTTP on %s", self.settings.grpc_addr, self.settings.http_addr
        )

    async def stop(self) -> None:
        """Report not-serving, let in-flight Checks finish within the drain period, close."""
        self._is_serving = False
        await self.watcher.stop()
        for service in ("", AUTHORIZATION_SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._grpc is not None:
            await self._grpc.stop(self.settings.drain_seconds)
        await self.fetcher.close()
        if self._http is not None:
            await self._http.cleanup()
        if self._log_writer is not None:
            self._log_writer.stop()
            self._log_writer = None

    async def run_until_signalled(self, started: Callable[[], None] = lambda: None) -> None:
        """Start, call `started`, serve until SIGTERM or SIGINT, then stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self.start()
        started()
        await stop.wait()
        log.info("stopping")
        await self.stop()


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it is a dependency on Linux), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    log.debug("event loop: uvloop")
    uvloop.run(main)


async def serve(settings: Settings) -> None:
    """The `serve` command's process: the service, with the collector schedule it wants."""
    await Service(settings).run_until_signalled(started=settle_after_start)

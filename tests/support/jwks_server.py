"""A real local JWKS/OIDC server for tests, which the test can switch keys on or break."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class JwksBehaviour:
    body: str = ""
    mode: str = "ok"  # ok | 500 | garbage | hang | huge | drop
    cache_control: str = ""
    hits: int = 0
    discovery_hits: int = 0
    paths: list[str] = field(default_factory=list)


@dataclass
class RunningServer:
    base: str
    behaviour: JwksBehaviour

    @property
    def jwks_uri(self) -> str:
        return f"{self.base}/jwks"


def _app(behaviour: JwksBehaviour, base: list[str]) -> web.Application:
    async def jwks(request: web.Request) -> web.StreamResponse:
        behaviour.hits += 1
        behaviour.paths.append(request.path)
        if behaviour.mode == "500":
            return web.Response(status=500)
        if behaviour.mode == "garbage":
            return web.Response(text="{not json")
        if behaviour.mode == "huge":
            return web.Response(body=b" " * (2 << 20))
        if behaviour.mode == "hang":
            await asyncio.sleep(30)
        if behaviour.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        headers = {"Cache-Control": behaviour.cache_control} if behaviour.cache_control else {}
        return web.Response(text=behaviour.body, content_type="application/json", headers=headers)

    async def discovery(request: web.Request) -> web.Response:
        behaviour.discovery_hits += 1
        return web.json_response({"issuer": base[0], "jwks_uri": f"{base[0]}/jwks"})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/.well-known/openid-configuration", discovery)
    return app


@asynccontextmanager
async def jwks_server(
    behaviour: JwksBehaviour, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RunningServer]:
    base: list[str] = [""]
    runner = web.AppRunner(_app(behaviour, base), shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base[0] = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield RunningServer(base[0], behaviour)
    finally:
        await runner.cleanup()


def make_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1; returns the server's SSL
    context and the CA bundle file a client should trust."""

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file, ca_file = (
        directory / "server.pem",
        directory / "server.key",
        directory / "ca.pem",
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file

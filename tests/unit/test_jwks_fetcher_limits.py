"""JWKS fetches that must be refused or explained, against real local servers on 127.0.0.1:
too many keys, weak keys, redirect loops and other answers that are not a JWKS."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from extauthz.authn.jwks_fetcher import MAX_REDIRECTS, JwksFetcher
from extauthz.authn.key_store import KeyStore
from extauthz.authn.providers import JwksSource
from tests.support.jwks_server import JwksBehaviour, jwks_server
from tests.support.tokens import jwks_of, rsa_key

GOOD = rsa_key(kid="good")
_WEAK_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=1024)
WEAK = {**json.loads(RSAAlgorithm.to_jwk(_WEAK_PRIVATE.public_key())), "kid": "weak"}
FETCHER_LOG = "extauthz.authn.jwks_fetcher"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def source(uri: str) -> JwksSource:
    return JwksSource(uri, 1.0, False)


def _document(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


class Recorder:
    """A fetcher with its own store, remembering every result it reports."""

    def __init__(self, **options: Any) -> None:
        self.store = KeyStore()
        self.results: list[str] = []
        self.fetcher = JwksFetcher(
            self.store, on_result=lambda uri, result: self.results.append(result), **options
        )

    async def fetch(self, uri: str) -> bool:
        self.store.track({uri})
        return await self.fetcher.fetch(source(uri)) is not None


# -- too many keys -----------------------------------------------------------------------------


def test_a_key_set_over_the_limit_is_refused_and_the_last_good_keys_keep_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(GOOD))
        recorder = Recorder()
        async with jwks_server(behaviour) as server:
            assert await recorder.fetch(server.jwks_uri)
            good = recorder.store.keys(server.jwks_uri, time.time())
            behaviour.body = _document(*[GOOD.jwk] * 101)
            with caplog.at_level(logging.WARNING, logger=FETCHER_LOG):
                assert not await recorder.fetch(server.jwks_uri)
            assert recorder.results == ["ok", "too_many_keys"]
            assert recorder.store.keys(server.jwks_uri, time.time()) is good
            message = (
                "Jwks has 101 keys, more than the limit of 100 (raise it with --max-jwks-keys)"
            )
            assert recorder.store.state(server.jwks_uri).last_error == f"too_many_keys: {message}"
            assert [r.getMessage() for r in caplog.records] == [
                f"JWKS fetch for {server.jwks_uri} failed (too_many_keys): {message}"
            ]
        await recorder.fetcher.close()

    run(scenario)


def test_a_raised_limit_lets_the_same_key_set_in() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=_document(*[GOOD.jwk] * 101))
        recorder = Recorder(max_keys=101)
        async with jwks_server(behaviour) as server:
            assert await recorder.fetch(server.jwks_uri)
            keys = recorder.store.keys(server.jwks_uri, time.time())
            assert keys is not None and len(keys) == 101
            assert recorder.results == ["ok"]
        await recorder.fetcher.close()

    run(scenario)


# -- weak keys ---------------------------------------------------------------------------------


def test_strict_keys_drops_a_1024_bit_rsa_key(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=_document(WEAK, GOOD.jwk))
        recorder = Recorder(strict_keys=True)
        async with jwks_server(behaviour) as server:
            with caplog.at_level(logging.WARNING, logger=FETCHER_LOG):
                assert await recorder.fetch(server.jwks_uri)
            keys = recorder.store.keys(server.jwks_uri, time.time())
            assert keys is not None and [k.kid for k in keys.keys] == ["good"]
            reason = "keys[0] (kid 'weak'): RSA modulus of 1024 bits is under 2048 (--strict-keys)"
            assert keys.skipped == (reason,)
            assert [r.getMessage() for r in caplog.records] == [
                f"JWKS {server.jwks_uri}: skipped a key: {reason}"
            ]
        await recorder.fetcher.close()

    run(scenario)


def test_strict_keys_with_only_weak_keys_refuses_the_set() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=_document(WEAK))
        recorder = Recorder(strict_keys=True)
        async with jwks_server(behaviour) as server:
            assert not await recorder.fetch(server.jwks_uri)
            assert recorder.results == ["invalid"]
            assert recorder.store.keys(server.jwks_uri, time.time()) is None
            assert recorder.store.state(server.jwks_uri).last_error.endswith("(--strict-keys))")
        await recorder.fetcher.close()

    run(scenario)


def test_weak_keys_are_kept_without_strict_and_logged_once_per_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=_document(WEAK, GOOD.jwk))
        recorder = Recorder()
        async with jwks_server(behaviour) as server:
            with caplog.at_level(logging.WARNING, logger=FETCHER_LOG):
                for _ in range(3):  # the same keys again: nothing new to say
                    assert await recorder.fetch(server.jwks_uri)
                keys = recorder.store.keys(server.jwks_uri, time.time())
                assert keys is not None and [k.kid for k in keys.keys] == ["weak", "good"]
                behaviour.body = _document(GOOD.jwk)
                assert await recorder.fetch(server.jwks_uri)  # rotated: no weak key left
                behaviour.body = _document(WEAK, GOOD.jwk)
                assert await recorder.fetch(server.jwks_uri)  # back: said again
            warning = (
                f"JWKS {server.jwks_uri}: weak key kept (--strict-keys drops it): "
                "kid 'weak': RSA modulus of 1024 bits is under 2048"
            )
            assert [r.getMessage() for r in caplog.records] == [warning, warning]
        await recorder.fetcher.close()

    run(scenario)


# -- answers that are not a JWKS, explained ----------------------------------------------------


@asynccontextmanager
async def misbehaving_server() -> AsyncIterator[str]:
    """Paths that fail the ways a misconfigured IdP or proxy does; yields the base URL."""

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def to_ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://127.0.0.1/jwks")

    async def to_nowhere(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://[::1"})

    async def cut_short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b'{"keys"')
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    for path, handler in [("/loop", loop), ("/ftp", to_ftp), ("/nowhere", to_nowhere),
                          ("/cut-short", cut_short)]:  # fmt: skip
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        pytest.param("/loop", f"too many redirects (more than {MAX_REDIRECTS}) fetching {{url}}", id="redirect-loop"),
        pytest.param("/ftp", "redirected to ftp://127.0.0.1/jwks, which is not an http(s) URL, fetching {url}", id="redirect-to-ftp"),
        pytest.param("/nowhere", "redirected to an invalid URL 'http://[::1' fetching {url}", id="redirect-to-invalid-url"),
        pytest.param("/cut-short", "the response body was cut short fetching {url}", id="body-cut-short"),
    ],
)  # fmt: skip
def test_http_failures_are_explained(path: str, detail: str) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with misbehaving_server() as base:
            url = base + path
            assert not await recorder.fetch(url)
            assert recorder.results == ["http_error"]
            assert recorder.store.state(url).last_error == f"http_error: {detail.format(url=url)}"
        await recorder.fetcher.close()

    run(scenario)


@asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that reads the request and answers `answer` verbatim (maybe
    nothing), then closes: what a non-HTTP service on the JWKS port looks like."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/jwks"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid HTTP response from {url}: ", id="not-http"),
        pytest.param(b"", "the server closed the connection without an answer fetching {url}", id="no-answer"),
    ],
)  # fmt: skip
def test_answers_that_are_not_http_are_explained(answer: bytes, detail: str) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with raw_server(answer) as url:
            assert not await recorder.fetch(url)
            assert recorder.results == ["http_error"]
            assert recorder.store.state(url).last_error.startswith(
                f"http_error: {detail.format(url=url)}"
            )
        await recorder.fetcher.close()

    run(scenario)

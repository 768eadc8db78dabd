"""JWKS fetching against a real local HTTP server that the test controls and can break."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from extauthz.authn.jwks import KeyStore
from extauthz.authn.jwks_fetcher import JwksFetcher
from tests.support.tokens import jwks_of, rsa_key


@dataclass
class Behaviour:
    mode: str = "ok"  # ok | 500 | garbage | hang | huge
    body: str = field(default_factory=lambda: jwks_of(rsa_key()))
    hits: int = 0


@asynccontextmanager
async def jwks_server(behaviour: Behaviour) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        behaviour.hits += 1
        if behaviour.mode == "500":
            return web.Response(status=500)
        if behaviour.mode == "garbage":
            return web.Response(text="{not json")
        if behaviour.mode == "huge":
            return web.Response(body=b" " * (2 << 20))
        if behaviour.mode == "hang":
            await asyncio.sleep(5)
        return web.Response(text=behaviour.body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/jwks"
    finally:
        await runner.cleanup()


def test_fetch_then_failures_keep_last_good_keys() -> None:
    async def scenario() -> None:
        behaviour = Behaviour()
        store = KeyStore()
        results: list[str] = []
        fetcher = JwksFetcher(store, on_result=lambda uri, result: results.append(result))
        async with jwks_server(behaviour) as uri:
            store.track({uri})
            assert await fetcher.fetch(uri, timeout=1)
            good = store.keys(uri)
            assert good is not None and len(good) == 1
            for mode in ("500", "garbage", "huge", "hang"):
                behaviour.mode = mode
                assert not await fetcher.fetch(uri, timeout=0.3)
                assert store.keys(uri) is good
            assert results == ["ok", "http_error", "invalid", "invalid", "timeout"]
            assert store.state(uri).failures == 4
        await fetcher.close()

    asyncio.run(scenario())


def test_cold_start_with_server_down_then_recovery() -> None:
    async def scenario() -> None:
        behaviour = Behaviour(mode="500")
        store = KeyStore()
        fetcher = JwksFetcher(store)
        async with jwks_server(behaviour) as uri:
            await fetcher.track({uri: 1.0})
            assert store.keys(uri) is None  # tokens of this issuer fail closed
            assert store.state(uri).last_error.startswith("http_error")
            behaviour.mode = "ok"
            deadline = asyncio.get_running_loop().time() + 5
            while store.keys(uri) is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert store.keys(uri) is not None  # picked up by the retry, no restart
        await fetcher.close()

    asyncio.run(scenario())


def test_connection_refused_is_http_error() -> None:
    async def scenario() -> None:
        store = KeyStore()
        results: list[str] = []
        fetcher = JwksFetcher(store, on_result=lambda uri, result: results.append(result))
        uri = "http://127.0.0.1:1/jwks"
        assert not await fetcher.fetch(uri, timeout=1)
        assert results == ["http_error"]
        await fetcher.close()

    asyncio.run(scenario())

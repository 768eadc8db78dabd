"""Fetch remote JWKS documents with aiohttp, off the request path, and keep them fresh."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from extauthz.authn.jwks import KeyStore
from extauthz.authn.keys import JwksError, parse_jwks

log = logging.getLogger(__name__)

# Istio's istiod refreshes every jwksUri every 20 minutes by default.
DEFAULT_REFRESH_SECONDS = 20 * 60
MAX_BODY_BYTES = 1 << 20
MAX_REDIRECTS = 3
_RETRY_FIRST_SECONDS = 1.0
_RETRY_MAX_SECONDS = 60.0


class JwksFetcher:
    def __init__(
        self,
        store: KeyStore,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._on_result = on_result or (lambda uri, result: None)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def fetch(self, uri: str, timeout: float) -> bool:
        """Fetch once and record the outcome in the store; True when new keys were stored."""
        try:
            session = await self._client()
            async with session.get(
                uri, timeout=aiohttp.ClientTimeout(total=timeout), max_redirects=MAX_REDIRECTS
            ) as response:
                if response.status != 200:
                    raise _FetchError("http_error", f"HTTP {response.status}")
                body = await response.content.read(MAX_BODY_BYTES + 1)
                if len(body) > MAX_BODY_BYTES:
                    raise _FetchError("invalid", f"body larger than {MAX_BODY_BYTES} bytes")
            keys = parse_jwks(body.decode("utf-8", "replace"))
        except _FetchError as exc:
            return self._failed(uri, exc.result, exc.detail)
        except JwksError as exc:
            return self._failed(uri, "invalid", str(exc))
        except TimeoutError:
            return self._failed(uri, "timeout", f"no answer within {timeout:g}s")
        except aiohttp.ClientError as exc:
            return self._failed(uri, "http_error", f"{type(exc).__name__}: {exc}")
        self._store.record_success(uri, keys, time.time())
        self._on_result(uri, "ok")
        log.info("fetched JWKS %s: %d keys", uri, len(keys))
        return True

    def _failed(self, uri: str, result: str, detail: str) -> bool:
        self._store.record_failure(uri, f"{result}: {detail}")
        self._on_result(uri, result)
        log.warning("JWKS fetch from %s failed (%s): %s", uri, result, detail)
        return False

    async def _keep_fresh(self, uri: str, timeout: float) -> None:
        retry = _RETRY_FIRST_SECONDS
        while True:
            if await self.fetch(uri, timeout):
                retry = _RETRY_FIRST_SECONDS
                await asyncio.sleep(self._refresh_seconds)
            else:
                await asyncio.sleep(retry)
                retry = min(retry * 2, _RETRY_MAX_SECONDS)

    async def track(self, uris: dict[str, float], first_fetch_timeout: float | None = None) -> None:
        """Keep exactly these URIs fresh. New ones are fetched once right away (waiting at
        most their timeout) so the first requests find keys; then refreshed in the background."""
        self._store.track(set(uris))
        for uri in set(self._tasks) - set(uris):
            self._tasks.pop(uri).cancel()
        new = {uri: timeout for uri, timeout in uris.items() if uri not in self._tasks}
        for uri, timeout in new.items():
            self._tasks[uri] = asyncio.create_task(
                self._keep_fresh(uri, timeout), name=f"jwks {uri}"
            )
        if new:
            deadline = first_fetch_timeout or max(new.values())
            await self._wait_first(set(new), deadline)

    async def _wait_first(self, uris: set[str], deadline: float) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if all(self._store.state(u).has_keys or self._store.state(u).failures for u in uris):
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


class _FetchError(Exception):
    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail

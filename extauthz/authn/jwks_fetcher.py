"""Fetch remote JWKS documents with aiohttp, off the request path, and keep them fresh.

- One background task per URI refreshes it every `refresh_seconds` (Istio's 20 minutes),
  with ±10 % jitter so a fleet does not stampede the IdP; a `Cache-Control: max-age` from
  the IdP shortens that (never below 30 s). Failures retry with jittered exponential backoff
  and keep the last good keys.
- Fetches are single-flight: however many callers want a URI, one request is in flight.
- `refetch(uri)` is what a Check calls for a token whose kid is unknown: it joins the fetch in
  flight or starts one, at most once per `refetch_min_seconds` per URI, and waits at most the
  rule's timeout.
- A rule without jwks/jwksUri gets its keys via `<issuer>/.well-known/openid-configuration`.
- A document with more than `max_keys` keys is refused (`too_many_keys`) before any key is
  parsed; weak keys are kept and logged, or skipped with `strict_keys`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Callable

import aiohttp

from extauthz.authn.key_store import KeyStore
from extauthz.authn.keys import DEFAULT_MAX_KEYS, JwksError, KeySet, TooManyKeysError, parse_jwks
from extauthz.authn.providers import JwksSource

log = logging.getLogger(__name__)

# Istio's istiod refreshes every jwksUri every 20 minutes by default.
DEFAULT_REFRESH_SECONDS = 20 * 60
DEFAULT_REFETCH_MIN_SECONDS = 30.0
MIN_REFRESH_SECONDS = 30.0
MAX_BODY_BYTES = 1 << 20
MAX_REDIRECTS = 3
_RETRY_FIRST_SECONDS = 1.0
_RETRY_MAX_SECONDS = 60.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)

ResultCallback = Callable[[str, str], None]


class FetchError(Exception):
    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result  # a metric label: http_error, timeout, invalid, too_many_keys
        self.detail = detail


def _readable(exc: aiohttp.ClientError, url: str) -> str:
    """What went wrong fetching `url`, for a log line and the admin page: several of
    aiohttp's exceptions print as an empty status line or as a bare URL."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"too many redirects (more than {MAX_REDIRECTS}) fetching {url}"
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError):  # str() is the URL alone
        return f"redirected to {exc}, which is not an http(s) URL, fetching {url}"
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return f"{exc} is not an http(s) URL"
    if isinstance(exc, aiohttp.InvalidUrlRedirectClientError):
        return f"redirected to an invalid URL {str(exc.url)!r} fetching {url}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL {str(exc.url)!r}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"the server closed the connection without an answer fetching {url}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response body was cut short fetching {url}"
    if isinstance(exc, aiohttp.ClientResponseError):  # e.g. a status line that is not HTTP
        message = " ".join(str(exc.message).split())
        return f"invalid HTTP response from {url}: {message or exc.status}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} fetching {url}"


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """System CAs plus an optional bundle; certificate and host name checks always on."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _jittered(seconds: float, spread: float = 0.1) -> float:
    return seconds * random.uniform(1 - spread, 1 + spread)


class JwksFetcher:
    def __init__(
        self,
        store: KeyStore,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        on_result: ResultCallback | None = None,
        refetch_min_seconds: float = DEFAULT_REFETCH_MIN_SECONDS,
        ca_file: str | None = None,
        on_refetch: Callable[[str], None] | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        strict_keys: bool = False,
    ) -> None:
        self._store = store
        self._max_keys = max_keys
        self._strict_keys = strict_keys
        self._refresh_seconds = refresh_seconds
        self._refetch_min_seconds = refetch_min_seconds
        self._on_result = on_result or (lambda uri, result: None)
        self._on_refetch = on_refetch or (lambda uri: None)
        self._ssl = ssl_context(ca_file)
        self._session: aiohttp.ClientSession | None = None
        self._sources: dict[str, JwksSource] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[str, asyncio.Task[float | None]] = {}
        self._last_refetch: dict[str, float] = {}

    # -- HTTP ------------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self._session

    async def _get(self, url: str, timeout: float) -> tuple[bytes, float | None]:
        """The body (size-limited) and the max-age the server asked for."""
        try:
            return await self._read(url, timeout)
        except TimeoutError:  # (aiohttp's ServerTimeoutError is a ClientError too)
            raise
        except aiohttp.ClientError as exc:
            raise FetchError("http_error", _readable(exc, url)) from exc

    async def _read(self, url: str, timeout: float) -> tuple[bytes, float | None]:
        async with self._client().get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), max_redirects=MAX_REDIRECTS
        ) as response:
            if response.status != 200:
                raise FetchError("http_error", f"HTTP {response.status} from {url}")
            if (response.content_length or 0) > MAX_BODY_BYTES:
                raise FetchError("invalid", f"body larger than {MAX_BODY_BYTES} bytes")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise FetchError("invalid", f"body larger than {MAX_BODY_BYTES} bytes")
            found = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
            return bytes(body), float(found.group(1)) if found else None

    async def download(self, source: JwksSource) -> tuple[str, str, float | None]:
        """The JWKS document's text (after OIDC discovery if the source is a discovery
        document), the URI it came from, and the max-age its server asked for."""
        jwks_uri = source.uri
        if source.is_discovery:
            raw, _ = await self._get(source.uri, source.timeout_seconds)
            try:
                document = json.loads(raw)
                jwks_uri = document["jwks_uri"]
            except (ValueError, KeyError, TypeError) as exc:
                raise FetchError("invalid", f"no jwks_uri in {source.uri}") from exc
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
                raise FetchError("invalid", f"jwks_uri in {source.uri} is not an http(s) URL")
        raw, max_age = await self._get(jwks_uri, source.timeout_seconds)
        return raw.decode("utf-8", "replace"), jwks_uri, max_age

    def parse(self, text: str) -> KeySet:
        """A downloaded JWKS, within this fetcher's key limits."""
        try:
            return parse_jwks(text, self._max_keys, self._strict_keys)
        except TooManyKeysError as exc:
            raise FetchError("too_many_keys", str(exc)) from exc
        except JwksError as exc:
            raise FetchError("invalid", str(exc)) from exc

    async def _download(self, source: JwksSource) -> tuple[KeySet, str, float | None]:
        text, jwks_uri, max_age = await self.download(source)
        return self.parse(text), jwks_uri, max_age

    async def _fetch(self, source: JwksSource) -> float | None:
        """One fetch, recorded in the store. Returns the next refresh delay on success."""
        uri = source.uri
        try:
            keys, jwks_uri, max_age = await self._download(source)
        except FetchError as exc:
            self._failed(uri, exc.result, exc.detail)
            return None
        except TimeoutError:
            self._failed(uri, "timeout", f"no answer within {source.timeout_seconds:g}s")
            return None
        except aiohttp.ClientError as exc:  # (_get describes those it sees)
            self._failed(uri, "http_error", _readable(exc, uri))
            return None
        except ValueError as exc:  # e.g. an invalid URL
            self._failed(uri, "http_error", str(exc))
            return None
        previous = self._store.state(uri).keys
        self._store.record_success(uri, keys, time.time(), jwks_uri)
        self._on_result(uri, "ok")
        self._warn_about(uri, keys, previous)
        log.info("fetched JWKS %s: %d keys", jwks_uri, len(keys))
        if max_age is None:
            return _jittered(self._refresh_seconds)
        return _jittered(max(MIN_REFRESH_SECONDS, min(max_age, self._refresh_seconds)))

    def _warn_about(self, uri: str, keys: KeySet, previous: KeySet | None) -> None:
        """Skipped and weak keys, once per change: a refresh every 20 minutes that finds the
        same keys does not repeat them."""
        before = (previous.skipped, previous.weak_keys) if previous else None
        if before == (keys.skipped, keys.weak_keys):
            return
        for reason in keys.skipped:
            log.warning("JWKS %s: skipped a key: %s", uri, reason)
        for weakness in keys.weak_keys:
            log.warning("JWKS %s: weak key kept (--strict-keys drops it): %s", uri, weakness)

    def _failed(self, uri: str, result: str, detail: str) -> None:
        self._store.record_failure(uri, f"{result}: {detail}")
        self._on_result(uri, result)
        log.warning("JWKS fetch for %s failed (%s): %s", uri, result, detail)

    # -- single flight -----------------------------------------------------------------------
    def fetch(self, source: JwksSource) -> asyncio.Task[float | None]:
        """The fetch in flight for this URI, or a new one."""
        task = self._inflight.get(source.uri)
        if task is None:
            task = asyncio.create_task(self._fetch(source), name=f"jwks fetch {source.uri}")
            self._inflight[source.uri] = task
            task.add_done_callback(lambda _: self._inflight.pop(source.uri, None))
        return task

    async def refetch(self, uri: str) -> bool:
        """For a token whose key is unknown: join or start a fetch (rate-limited per URI),
        waiting at most the rule's timeout. True when it ended with keys in the store."""
        source = self._sources.get(uri)
        if source is None:
            return False
        task = self._inflight.get(uri)
        if task is None:
            now = time.monotonic()
            if now - self._last_refetch.get(uri, -1e9) < self._refetch_min_seconds:
                return False
            self._last_refetch[uri] = now
            self._on_refetch(uri)
            task = self.fetch(source)
        try:
            await asyncio.wait_for(asyncio.shield(task), source.timeout_seconds)
        except TimeoutError:
            return False
        return self._store.keys(uri, time.time()) is not None

    # -- background refresh ------------------------------------------------------------------
    async def _keep_fresh(self, source: JwksSource) -> None:
        retry = _RETRY_FIRST_SECONDS
        while True:
            delay = await self.fetch(source)
            if delay is not None:
                retry = _RETRY_FIRST_SECONDS
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(_jittered(retry, 0.2))
                retry = min(retry * 2, _RETRY_MAX_SECONDS)

    async def track(self, sources: dict[str, JwksSource]) -> None:
        """Keep exactly these sources fresh. New ones are fetched right away and waited for
        (at most their timeout), so the first requests find keys."""
        self._store.track(set(sources))
        for uri in set(self._tasks) - set(sources):
            self._tasks.pop(uri).cancel()
            self._sources.pop(uri, None)
        new = [source for uri, source in sources.items() if uri not in self._tasks]
        self._sources.update(sources)
        for source in new:
            self.fetch(source)  # the refresh loop's first round joins this fetch
            self._tasks[source.uri] = asyncio.create_task(
                self._keep_fresh(source), name=f"jwks refresh {source.uri}"
            )
        if new:
            deadline = max(s.timeout_seconds for s in new)
            waiting = [self._inflight[s.uri] for s in new if s.uri in self._inflight]
            if waiting:
                await asyncio.wait([asyncio.shield(t) for t in waiting], timeout=deadline)

    async def close(self) -> None:
        for task in [*self._tasks.values(), *self._inflight.values()]:
            task.cancel()
        await asyncio.gather(
            *self._tasks.values(), *self._inflight.values(), return_exceptions=True
        )
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

"""The HTTP side: /healthz, /readyz and /metrics (aiohttp)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from extauthz.authn.key_store import KeyStore
from extauthz.server.metrics import Metrics
from extauthz.snapshot.store import ConfigStore


def readiness(store: ConfigStore, keys: KeyStore, is_serving: bool) -> tuple[bool, dict[str, Any]]:
    """Ready when a configuration is loaded and the gRPC server is serving. URIs without
    keys are reported (their tokens are rejected) but do not make the service unready:
    requests without tokens, and other issuers, are still decided correctly."""
    detail: dict[str, Any] = {
        "serving": is_serving,
        "config_loaded": store.is_loaded,
        "pid": os.getpid(),
    }
    if store.is_loaded:
        snapshot = store.current
        detail["generation"] = snapshot.generation
        detail["workload"] = str(snapshot.workload)
        detail["applied"] = list(snapshot.applied)
    if store.last_error:
        # The rejected generation: the last good one keeps serving.
        detail["last_config_error"] = store.last_error
        detail["last_config_error_at"] = store.last_error_at
    detail["jwks"] = [
        {
            "uri": state.uri,
            "has_keys": state.has_keys,
            "keys": len(state.keys) if state.keys else 0,
            "fetched_at": state.fetched_at,
            "last_error": state.last_error,
        }
        for state in keys.states()
    ]
    detail["jwks_without_keys"] = [s.uri for s in keys.states() if not s.has_keys]
    return is_serving and store.is_loaded, detail


def build_admin_app(
    store: ConfigStore, keys: KeyStore, metrics: Metrics, is_serving: Callable[[], bool]
) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ready, detail = readiness(store, keys, is_serving())
        detail["ready"] = ready
        return web.Response(
            status=200 if ready else 503,
            text=json.dumps(detail, indent=2) + "\n",
            content_type="application/json",
        )

    async def metrics_page(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app

"""Upstreams of the local rig, run as separate processes:

  productpage  stands in for bookinfo's productpage: /productpage, /api/v1/products/<n>
  jwks         serves a JWKS file at /get_jwks, like the nginx-proxy of Istio's docs
  httpbin      the real httpbin application (from PyPI), for /headers

Each counts what it received at /__rig/requests so tests can prove nothing got through.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

_COUNT = web.AppKey("count", list)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _counting_app() -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/__rig/"):
            request.app[_COUNT].append(request.path_qs)
        return await handler(request)

    app = web.Application(middlewares=[count])
    app[_COUNT] = []

    async def requests(request: web.Request) -> web.Response:
        return web.json_response({"count": len(app[_COUNT]), "paths": app[_COUNT][-50:]})

    app.router.add_get("/__rig/requests", requests)
    return app


def productpage_app() -> web.Application:
    app = _counting_app()

    async def productpage(request: web.Request) -> web.Response:
        return web.Response(text="<html><body><h1>The Comedy of Errors</h1></body></html>\n",
                            content_type="text/html")  # fmt: skip

    async def product(request: web.Request) -> web.Response:
        return web.json_response(
            {"id": int(request.match_info["id"]), "title": "The Comedy of Errors",
             "headers": dict(request.headers)}
        )  # fmt: skip

    async def headers(request: web.Request) -> web.Response:
        return web.json_response({"headers": dict(request.headers), "query": request.query_string})

    async def anything(request: web.Request) -> web.Response:
        # Every other path answers 200 with what arrived, so tests can see what got through.
        return web.json_response({"path": request.raw_path, "headers": dict(request.headers)})

    app.router.add_get("/productpage", productpage)
    app.router.add_get(r"/api/v1/products/{id:\d+}", product)
    app.router.add_route("*", "/headers", headers)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


def jwks_app(jwks_file: Path) -> web.Application:
    app = _counting_app()

    async def get_jwks(request: web.Request) -> web.Response:
        return web.Response(text=jwks_file.read_text(), content_type="application/json")

    app.router.add_get("/get_jwks", get_jwks)
    return app


def run_httpbin(host: str, port: int) -> None:
    from httpbin import app as httpbin_app  # the real httpbin (Flask)
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    make_server(host, port, httpbin_app, threaded=True).serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extauthz.rig.servers")
    parser.add_argument("role", choices=["productpage", "jwks", "httpbin"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwks-file", type=Path)
    args = parser.parse_args(argv)
    if args.role == "httpbin":
        run_httpbin(args.host, args.port)
        return 0
    if args.role == "jwks":
        if args.jwks_file is None:
            parser.error("jwks needs --jwks-file")
        app = jwks_app(args.jwks_file)
    else:
        app = productpage_app()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The floor for configuration (c): an ext_authz server that answers OK to every Check.

    .venv/bin/python bench/always_ok.py --port N [--loop asyncio|uvloop] [--capture FILE]
                                         [--burn-us US]

It does no work per request beyond what grpc.aio itself does (decode the CheckRequest,
encode a fixed CheckResponse), so Envoy -> ext_authz -> this server measures the cost of
the gRPC hop and of a Python asyncio gRPC server, with no policy at all. `--capture` writes
the first CheckRequest it receives (serialized) to FILE: what Envoy really sends.
`--burn-us` spins that many microseconds of the thread's CPU in each Check before it
answers: a Check of known cost, to see what a given cost per Check does to throughput
(bench/run.py --burn-us).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import status_pb2

# A Check burning more than this would time out in Envoy (1 s) long before it told anything.
MAX_BURN_US = 100_000.0

# Built once: every answer is this same message.
OK = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=0), ok_response=external_auth_pb2.OkHttpResponse()
)


class AlwaysOk(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, capture: Path | None = None, burn_us: float = 0.0) -> None:
        self._capture = capture
        self._burn_s = burn_us / 1e6

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: Any
    ) -> external_auth_pb2.CheckResponse:
        if self._capture is not None:
            self._capture.write_bytes(request.SerializeToString())
            self._capture = None
        if self._burn_s:
            burn(self._burn_s)
        return OK


def burn(seconds: float) -> None:
    """Spin until this thread has used `seconds` more CPU (time spent waiting for a core
    does not count, so the cost is the same however busy the machine is)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def serve(host: str, port: int, capture: Path | None, burn_us: float) -> None:
    server = grpc.aio.server()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AlwaysOk(capture, burn_us), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--capture", type=Path, help="write the first CheckRequest here")
    parser.add_argument(
        "--burn-us", type=float, default=0.0, help="CPU microseconds to spend in each Check"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.burn_us <= MAX_BURN_US:
        parser.error(f"--burn-us must be from 0 to {MAX_BURN_US:g}")
    main_coroutine = serve(args.host, args.port, args.capture, args.burn_us)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main_coroutine)
    else:
        asyncio.run(main_coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

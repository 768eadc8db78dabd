"""The benchmark's upstream: a fixed HTTP/1.1 200 from a bare asyncio protocol on uvloop.

    .venv/bin/python bench/upstream.py --port N

The rig's productpage (aiohttp) tops out near Envoy's own forwarding rate on this kind of
machine and takes a whole core doing so, which would cap and blur every configuration
with an upstream. This server parses only what it must (the end of each request head and
a Content-Length body, keep-alive) and answers every request with the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

BODY = b'{"id": 0, "title": "The Comedy of Errors"}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
_HEAD_END = b"\r\n\r\n"


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def split_requests(buffer: bytes) -> tuple[int, bytes]:
    """How many complete requests `buffer` holds, and the incomplete rest."""
    complete = 0
    while True:
        end = buffer.find(_HEAD_END)
        if end < 0:
            return complete, buffer
        length = _content_length(buffer[:end])
        request_end = end + len(_HEAD_END) + length
        if len(buffer) < request_end:
            return complete, buffer
        complete += 1
        buffer = buffer[request_end:]


class FixedResponse(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        complete, self._buffer = split_requests(self._buffer + data)
        if complete and self._transport is not None:
            self._transport.write(RESPONSE * complete)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedResponse, host, port, reuse_address=True)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

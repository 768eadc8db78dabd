"""The CheckRequest h2load sends straight to an authorizer, and a real gRPC probe of it.

The request mirrors one captured from Envoy 1.40 running envoy/gateway.yaml (see
`bench/always_ok.py --capture`): same attributes, same header set and order, the demo
token in `authorization`. h2load cannot speak gRPC, so the body is pre-framed: 1 byte
"not compressed", 4 bytes big-endian length, the serialized message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
_FRAME_HEADER = struct.Struct(">BI")  # compressed flag, message length


def check_request(
    token: str,
    path: str = "/api/v1/products/0",
    authority: str = "127.0.0.1:8080",
    client_port: int = 40000,
) -> external_auth_pb2.CheckRequest:
    host, _, port = authority.rpartition(":")
    request = external_auth_pb2.CheckRequest()
    attributes = request.attributes
    attributes.source.address.socket_address.address = "127.0.0.1"
    attributes.source.address.socket_address.port_value = client_port
    attributes.destination.address.socket_address.address = host
    attributes.destination.address.socket_address.port_value = int(port)
    attributes.request.time.GetCurrentTime()
    attributes.metadata_context.SetInParent()
    attributes.route_metadata_context.SetInParent()
    http = attributes.request.http
    http.id = "4503261989174010870"
    http.method = "GET"
    http.path = path
    http.host = authority
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    headers = {
        "x-request-id": "a1357602-6a7b-4461-9b1b-6f7bbd517f53",
        "x-forwarded-proto": "http",
        "x-envoy-external-address": "127.0.0.1",
        "user-agent": "wrk",
        **({"authorization": f"Bearer {token}"} if token else {}),
        ":scheme": "http",
        ":path": path,
        ":method": "GET",
        ":authority": authority,
    }
    http.headers.update(headers)
    return request


def grpc_frame(message: bytes) -> bytes:
    return _FRAME_HEADER.pack(0, len(message)) + message


def grpc_unframe(frame: bytes) -> bytes:
    """The message inside one uncompressed gRPC frame (the inverse of grpc_frame)."""
    compressed, length = _FRAME_HEADER.unpack_from(frame)
    if compressed:
        raise ValueError("compressed gRPC frames are not used here")
    message = frame[_FRAME_HEADER.size :]
    if len(message) != length:
        raise ValueError(f"frame says {length} bytes, has {len(message)}")
    return message


def check_body(request: external_auth_pb2.CheckRequest) -> bytes:
    return grpc_frame(request.SerializeToString())


@dataclass(frozen=True, slots=True)
class ProbeResult:
    grpc_code: str  # "OK" or the grpc.StatusCode name of a failed call
    check_code: int | None  # google.rpc code in CheckResponse.status (0 = allowed)
    is_ok_response: bool

    @property
    def is_allowed(self) -> bool:
        return self.grpc_code == "OK" and self.check_code == 0 and self.is_ok_response


def probe(port: int, request: external_auth_pb2.CheckRequest, count: int = 3) -> list[ProbeResult]:
    """Send `request` with a real gRPC client: h2load only sees HTTP 200, even for a call
    that failed with a gRPC status in the trailers, so a broken body must be caught here."""
    results = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for _ in range(count):
            try:
                response = stub.Check(request, timeout=5)
            except grpc.RpcError as exc:
                results.append(ProbeResult(exc.code().name, None, False))
                continue
            results.append(
                ProbeResult("OK", response.status.code, response.HasField("ok_response"))
            )
    return results

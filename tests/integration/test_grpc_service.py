"""The service as Envoy sees it: a real grpc.aio server and channel, real HTTP admin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz.config.workload import Workload, parse_labels
from extauthz.rig.rig import SAMPLES
from extauthz.server.app import Service, Settings

DEMO = (SAMPLES / "demo.jwt").read_text().strip()


def check_request(path: str, headers: dict[str, str]) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.scheme = "GET", path, "gw.example", "http"
    http.headers.update({":path": path, ":method": "GET", ":authority": "gw.example", **headers})
    request.attributes.source.address.socket_address.address = "127.0.0.1"
    return request


@asynccontextmanager
async def running(config: Path, payload_metadata: bool = False) -> AsyncIterator[Service]:
    service = Service(
        Settings(
            config_paths=(str(config),),
            grpc_addr="127.0.0.1:0",
            http_addr="127.0.0.1:0",
            workload=Workload("istio-system", parse_labels("app=istio-ingressgateway")),
            payload_metadata=payload_metadata,
        )
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def test_check_over_grpc_answers_like_istio() -> None:
    async def scenario() -> None:
        async with (
            running(SAMPLES / "gateway-policies.yaml") as service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        ):
            check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
            allowed = await check(check_request("/productpage", {}))
            assert allowed.status.code == code_pb2.OK
            denied = await check(check_request("/api/v1/products/0", {}))
            assert denied.status.code == code_pb2.PERMISSION_DENIED
            assert denied.denied_response.status.code == 403
            assert denied.denied_response.body == "RBAC: access denied"
            ok = await check(
                check_request("/api/v1/products/0?x=1", {"authorization": f"Bearer {DEMO}"})
            )
            assert ok.status.code == code_pb2.OK
            assert list(ok.ok_response.headers_to_remove) == ["authorization"]
            bad = await check(
                check_request("/p?q=1", {"authorization": f"Bearer {DEMO[:-8]}AAAAAAAA"})
            )
            assert bad.status.code == code_pb2.UNAUTHENTICATED
            assert bad.denied_response.status.code == 401
            assert bad.denied_response.body == "Jwt verification fails"
            [challenge] = bad.denied_response.headers
            assert challenge.header.key == "www-authenticate"
            assert (
                challenge.header.value
                == 'Bearer realm="http://gw.example/p?q=1", error="invalid_token"'
            )

            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "envoy.service.auth.v3.Authorization"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING

    run(scenario)


def test_metrics_and_readiness_over_http() -> None:
    async def scenario() -> None:
        async with running(SAMPLES / "gateway-policies.yaml") as service:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
                await check(check_request("/productpage", {}))
                await check(check_request("/api/v1/products/1", {}))
                await check(check_request("/api/v1/products/1", {}))
            base = f"http://127.0.0.1:{service.http_port}"
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/healthz") as response:
                    assert response.status == 200
                async with session.get(f"{base}/readyz") as response:
                    assert response.status == 200
                    detail = json.loads(await response.text())
                    assert detail["generation"] == 1
                    assert (
                        "AuthorizationPolicy istio-system/test-exclude (DENY)" in detail["applied"]
                    )
                async with session.get(f"{base}/metrics") as response:
                    text = await response.text()
            assert 'extauthz_checks_total{decision="allow",reason="ok"} 1.0' in text
            assert 'extauthz_checks_total{decision="deny",reason="policy"} 2.0' in text
            assert "extauthz_check_duration_seconds_count 3.0" in text
            assert "extauthz_config_generation 1.0" in text

    run(scenario)


def test_unexpected_failure_denies() -> None:
    async def scenario() -> None:
        async with running(SAMPLES / "gateway-policies.yaml") as service:
            service.store.set_generation(None)  # simulate a broken state: decide() cannot run
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                answer = await external_auth_pb2_grpc.AuthorizationStub(channel).Check(
                    check_request("/productpage", {"authorization": f"Bearer {DEMO}"})
                )
            assert answer.status.code == code_pb2.PERMISSION_DENIED
            assert answer.denied_response.status.code == 403
            assert service.metrics.check_errors._value.get() == 1

    run(scenario)


def test_bad_config_at_reload_keeps_last_good(tmp_path: Path) -> None:
    config = tmp_path / "policies.yaml"
    config.write_text((SAMPLES / "gateway-policies.yaml").read_text())

    async def scenario() -> None:
        async with running(config) as service:
            config.write_text(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {action: NOPE}\n"
            )
            await service.reload()
            assert service.store.current.generation == 1
            assert "is not one of" in service.store.last_error
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                answer = await external_auth_pb2_grpc.AuthorizationStub(channel).Check(
                    check_request("/api/v1/products/0", {})
                )
            assert answer.denied_response.status.code == 403

    run(scenario)


def test_context_extensions_name_the_workload_per_request() -> None:
    async def scenario() -> None:
        async with (
            running(SAMPLES / "gateway-policies.yaml") as service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        ):
            check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
            request = check_request("/api/v1/products/0", {})
            assert (await check(request)).status.code == code_pb2.PERMISSION_DENIED
            # The same request for another workload (say, a route of another app) is not
            # covered by the gateway's DENY policy.
            request.attributes.context_extensions.update({"namespace": "foo", "labels": "app=web"})
            assert (await check(request)).status.code == code_pb2.OK
            request.attributes.context_extensions["labels"] = "app"  # malformed: fail closed
            assert (await check(request)).status.code == code_pb2.PERMISSION_DENIED

    run(scenario)


@pytest.mark.parametrize(
    ("xff", "hops", "remote"),
    [
        (None, 0, "10.0.0.1"),
        # Measured against Envoy 1.40 (use_remote_address: true, no trusted hops): the peer.
        ("1.1.1.1", 0, "10.0.0.1"),
        ("1.1.1.1, 2.2.2.2", 0, "10.0.0.1"),
        ("1.1.1.1, 2.2.2.2", 1, "1.1.1.1"),
        ("1.1.1.1", 3, "10.0.0.1"),
    ],
)
def test_remote_ip_from_xff(xff: str | None, hops: int, remote: str) -> None:
    from extauthz.attributes import trusted_client_ip

    assert trusted_client_ip(xff, "10.0.0.1", hops) == remote


def test_dynamic_metadata_carries_the_verified_payload_and_explanation() -> None:
    """With --payload-metadata (off by default: see the next test)."""
    from extauthz.server.envoy_api import Responses

    to_response = Responses(payload_metadata=True).get

    async def scenario() -> None:
        async with running(SAMPLES / "gateway-policies.yaml") as service:
            store = service.store
            for _ in range(2):  # the second time the payload Struct comes from the memo
                from extauthz.decision import decide
                from extauthz.server.envoy_api import to_attributes

                attrs = to_attributes(
                    check_request("/api/v1/products/0", {"authorization": f"Bearer {DEMO}"})
                )
                response = to_response(decide(attrs, store.current, service.keys.keys, 0))
                fields = response.dynamic_metadata.fields
                assert fields["decision"].string_value == "allow"
                assert (
                    fields["request_principal"].string_value
                    == "testing@secure.istio.io/testing@secure.istio.io"
                )
                payload = (
                    fields["jwt_payload"]
                    .struct_value.fields["testing@secure.istio.io"]
                    .struct_value
                )
                assert payload.fields["foo"].string_value == "bar"
            denied = to_response(
                decide(
                    to_attributes(check_request("/api/v1/products/0", {})),
                    store.current,
                    service.keys.keys,
                    0,
                )
            )
            fields = denied.dynamic_metadata.fields
            assert fields["policy"].string_value == "istio-system/test-exclude"
            assert "notRequestPrincipals" in fields["detail"].string_value
            assert "jwt_payload" not in fields

    run(scenario)


@pytest.mark.parametrize("payload_metadata", [False, True])
def test_payload_metadata_only_when_asked(payload_metadata: bool) -> None:
    """Over gRPC, as Envoy gets it: the explanation always, the verified payload only with
    --payload-metadata (Settings.payload_metadata)."""

    async def scenario() -> None:
        async with (
            running(SAMPLES / "gateway-policies.yaml", payload_metadata) as service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
        ):
            check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
            request = check_request("/api/v1/products/0", {"authorization": f"Bearer {DEMO}"})
            for _ in range(2):  # decided, then remembered
                fields = (await check(request)).dynamic_metadata.fields
                assert fields["decision"].string_value == "allow"
                assert ("jwt_payload" in fields) is payload_metadata
                if payload_metadata:
                    issuer = fields["jwt_payload"].struct_value.fields["testing@secure.istio.io"]
                    assert issuer.struct_value.fields["foo"].string_value == "bar"

    run(scenario)

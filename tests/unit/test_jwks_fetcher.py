"""JWKS from the network, against a real local HTTP(S) server that the tests control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType

import pytest
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2

from extauthz.attributes import RequestAttributes
from extauthz.authn.jwks_fetcher import JwksFetcher
from extauthz.authn.key_store import KeyStore
from extauthz.authn.providers import JwksSource
from extauthz.authn.status import JwtStatus
from extauthz.config.workload import Workload
from extauthz.decision import decide
from extauthz.server.grpc_service import AuthorizationService
from extauthz.server.metrics import Metrics
from extauthz.snapshot.store import ConfigStore
from tests.support.config import generation_from, snapshot_from
from tests.support.jwks_server import JwksBehaviour, jwks_server, make_tls
from tests.support.tokens import claims, jwks_of, rsa_key

ISSUER = "https://idp.example"
OLD, NEW = rsa_key(kid="old"), rsa_key(kid="new")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def source(uri: str, timeout: float = 1.0, discovery: bool = False) -> JwksSource:
    return JwksSource(uri, timeout, discovery)


def test_failures_keep_last_good_keys_and_are_counted() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD))
        store = KeyStore()
        results: list[str] = []
        fetcher = JwksFetcher(store, on_result=lambda uri, result: results.append(result))
        async with jwks_server(behaviour) as server:
            src = source(server.jwks_uri, timeout=0.3)
            store.track({src.uri})
            assert await fetcher.fetch(src) is not None
            good = store.keys(src.uri, time.time())
            assert good is not None and len(good) == 1
            for mode in ("500", "garbage", "huge", "hang", "drop"):
                behaviour.mode = mode
                started = time.monotonic()
                assert await fetcher.fetch(src) is None
                assert time.monotonic() - started < 1.0  # the rule's timeout bounds a hang
                assert store.keys(src.uri, time.time()) is good
            assert results == ["ok", "http_error", "invalid", "invalid", "timeout", "http_error"]
            assert store.state(src.uri).failures == 5
        await fetcher.close()

    run(scenario)


def test_cold_start_with_server_down_then_recovery_without_restart() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD), mode="500")
        store = KeyStore()
        fetcher = JwksFetcher(store)
        async with jwks_server(behaviour) as server:
            await fetcher.track({server.jwks_uri: source(server.jwks_uri)})
            # Tokens of this issuer fail closed.
            assert store.keys(server.jwks_uri, time.time()) is None
            assert store.state(server.jwks_uri).last_error.startswith("http_error")
            behaviour.mode = "ok"
            deadline = time.monotonic() + 5
            while store.keys(server.jwks_uri, time.time()) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert store.keys(server.jwks_uri, time.time()) is not None  # the retry picked it up
        await fetcher.close()

    run(scenario)


def _service(yaml_text: str, store: KeyStore, fetcher: JwksFetcher) -> AuthorizationService:
    config = ConfigStore([], Workload("foo"), "istio-system")
    config.set_generation(generation_from(yaml_text))
    return AuthorizationService(config, store, Metrics(), refetch=fetcher.refetch)


def _check(token: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", "/", "svc"
    http.headers["authorization"] = f"Bearer {token}"
    return request


def _policy(uri: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ra, namespace: foo}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {uri}
    timeout: 2s
"""


def test_rotation_new_key_after_one_refetch_old_key_gone_after_refresh() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD))
        store = KeyStore()
        fetcher = JwksFetcher(store, refetch_min_seconds=60)
        async with jwks_server(behaviour) as server:
            service = _service(_policy(server.jwks_uri), store, fetcher)
            await fetcher.track(service._store.generation.jwks_sources)
            old_token = OLD.sign(claims(iss=ISSUER, exp=int(time.time()) + 600, iat=None))
            new_token = NEW.sign(claims(iss=ISSUER, exp=int(time.time()) + 600, iat=None))
            assert (await service.Check(_check(old_token), None)).status.code == code_pb2.OK
            behaviour.body = jwks_of(NEW)  # the IdP rotates
            hits = behaviour.hits
            assert (await service.Check(_check(new_token), None)).status.code == code_pb2.OK
            assert behaviour.hits == hits + 1  # exactly one refetch
            answer = await service.Check(_check(old_token), None)
            assert answer.denied_response.body == JwtStatus.JwksKidAlgMismatch.message
        await fetcher.close()

    run(scenario)


def test_a_thousand_unknown_kids_cause_at_most_one_fetch_per_window() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD))
        store = KeyStore()
        fetcher = JwksFetcher(store, refetch_min_seconds=60)
        async with jwks_server(behaviour) as server:
            service = _service(_policy(server.jwks_uri), store, fetcher)
            await fetcher.track(service._store.generation.jwks_sources)
            assert behaviour.hits == 1
            tokens = [
                OLD.sign(
                    claims(iss=ISSUER, exp=int(time.time()) + 600), headers={"kid": f"random-{i}"}
                )
                for i in range(1000)
            ]
            answers = await asyncio.gather(*(service.Check(_check(t), None) for t in tokens))
            assert all(a.denied_response.status.code == 401 for a in answers)
            assert behaviour.hits == 2  # the first fetch plus one refetch for the whole flood
        await fetcher.close()

    run(scenario)


def test_max_age_shortens_the_refresh() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD), cache_control="public, max-age=45")
        store = KeyStore()
        fetcher = JwksFetcher(store, refresh_seconds=3600)
        async with jwks_server(behaviour) as server:
            delay = await fetcher.fetch(source(server.jwks_uri))
            assert delay is not None and 40 <= delay <= 50
            behaviour.cache_control = "max-age=1"  # clamped up to 30 s, never a hammering
            delay = await fetcher.fetch(source(server.jwks_uri))
            assert delay is not None and 27 <= delay <= 33
            behaviour.cache_control = ""
            delay = await fetcher.fetch(source(server.jwks_uri))
            assert delay is not None and 3240 <= delay <= 3960  # the interval, ±10 % jitter
        await fetcher.close()

    run(scenario)


def test_stale_keys_stop_serving() -> None:
    store = KeyStore(max_stale_seconds=60)
    from extauthz.authn.keys import parse_jwks

    now = 1_800_000_000
    store.record_success("u", parse_jwks(jwks_of(OLD)), now - 30)
    assert store.keys("u", now) is not None
    store.record_success("u", parse_jwks(jwks_of(OLD)), now - 61)
    assert store.keys("u", now) is None
    # Staleness is judged at lookup: the very same state serves earlier, not later.
    fetched = now - 61
    assert store.keys("u", fetched + 60) is not None
    assert store.keys("u", fetched + 61) is None


def test_https_with_the_right_ca_and_fail_closed_with_a_wrong_one(tmp_path: Path) -> None:
    server_tls, ca_file = make_tls(tmp_path)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_ca = make_tls(other_dir)

    async def scenario() -> None:
        async with jwks_server(JwksBehaviour(body=jwks_of(OLD)), server_tls) as server:
            assert server.jwks_uri.startswith("https://")
            trusted = KeyStore()
            fetcher = JwksFetcher(trusted, ca_file=str(ca_file))
            assert await fetcher.fetch(source(server.jwks_uri)) is not None
            await fetcher.close()
            for ca in (str(other_ca), None):
                untrusted = KeyStore()
                results: list[str] = []
                fetcher = JwksFetcher(
                    untrusted, ca_file=ca, on_result=lambda u, r, out=results: out.append(r)
                )
                assert await fetcher.fetch(source(server.jwks_uri)) is None
                assert untrusted.keys(server.jwks_uri, time.time()) is None
                assert results == ["http_error"]
                assert "certificate" in untrusted.state(server.jwks_uri).last_error.lower()
                await fetcher.close()

    run(scenario)


def test_oidc_discovery_when_a_rule_names_no_keys() -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD))
        async with jwks_server(behaviour) as server:
            yaml_text = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ra, namespace: foo}}
spec:
  jwtRules:
  - issuer: {server.base}/
"""
            snapshot = snapshot_from(yaml_text)
            [(uri, src)] = snapshot.jwks_sources.items()
            assert uri == f"{server.base}/.well-known/openid-configuration" and src.is_discovery
            store = KeyStore()
            fetcher = JwksFetcher(store)
            await fetcher.track(snapshot.jwks_sources)
            assert (behaviour.discovery_hits, behaviour.hits) == (1, 1)
            assert store.state(uri).jwks_uri == server.jwks_uri
            token = OLD.sign(claims(iss=f"{server.base}/", exp=int(time.time()) + 60))
            attrs = RequestAttributes(
                headers=MappingProxyType({"authorization": f"Bearer {token}"})
            )
            decision = decide(attrs, snapshot, store.keys, int(time.time()))
            assert decision.authn.principal == f"{server.base}//alice"
            await fetcher.close()

    run(scenario)


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_checks_never_wait_longer_than_the_rule_timeout(mode: str) -> None:
    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD), mode=mode)
        store = KeyStore()
        fetcher = JwksFetcher(store, refetch_min_seconds=0)
        async with jwks_server(behaviour) as server:
            service = _service(
                _policy(server.jwks_uri).replace("timeout: 2s", "timeout: 300ms"), store, fetcher
            )
            await fetcher.track(service._store.generation.jwks_sources)
            token = OLD.sign(claims(iss=ISSUER, exp=int(time.time()) + 60))
            started = time.monotonic()
            answer = await service.Check(_check(token), None)
            assert time.monotonic() - started < 1.0
            assert answer.denied_response.body == JwtStatus.JwksFetchFail.message
        await fetcher.close()

    run(scenario)


def test_service_metrics_and_readiness_show_jwks_state(tmp_path: Path) -> None:
    from extauthz.server.admin import readiness
    from extauthz.server.app import Service, Settings

    async def scenario() -> None:
        behaviour = JwksBehaviour(body=jwks_of(OLD))
        async with jwks_server(behaviour) as server:
            config = tmp_path / "ra.yaml"
            down = "http://127.0.0.1:1/jwks"
            config.write_text(
                _policy(server.jwks_uri)
                + "  - issuer: other\n    jwksUri: "
                + down
                + "\n    timeout: 200ms\n"
            )
            service = Service(
                Settings(
                    (str(config),),
                    "127.0.0.1:0",
                    "127.0.0.1:0",
                    Workload("foo"),
                    jwks_refetch_min_seconds=0,
                )
            )
            await service.start()
            try:
                token = NEW.sign(claims(iss=ISSUER, exp=int(time.time()) + 60))
                service_check = AuthorizationService(
                    service.store, service.keys, service.metrics, refetch=service.fetcher.refetch
                )
                await service_check.Check(_check(token), None)
                text = service.metrics.exposition().decode()
                ready, detail = readiness(service.store, service.keys, True)
            finally:
                await service.stop()
        assert f'extauthz_jwks_fetches_total{{result="ok",uri="{server.jwks_uri}"}}' in text
        assert f'extauthz_jwks_fetches_total{{result="http_error",uri="{down}"}}' in text
        assert f'extauthz_jwks_keys{{uri="{server.jwks_uri}"}} 1.0' in text
        assert f'extauthz_jwks_keys{{uri="{down}"}} 0.0' in text
        assert f'extauthz_jwks_age_seconds{{uri="{server.jwks_uri}"}}' in text
        assert f'extauthz_jwks_unknown_kid_refetches_total{{uri="{server.jwks_uri}"}} 1.0' in text
        assert ready  # a URI without keys only fails its own tokens
        assert detail["jwks_without_keys"] == [down]

    run(scenario)


def test_rotation_refetch_also_for_the_second_of_two_rules_sharing_a_location() -> None:
    async def scenario() -> None:
        first, second = JwksBehaviour(body=jwks_of(OLD)), JwksBehaviour(body=jwks_of(OLD))
        store = KeyStore()
        fetcher = JwksFetcher(store, refetch_min_seconds=60)
        async with jwks_server(first) as a, jwks_server(second) as b:
            policy = (
                _policy(a.jwks_uri)
                + f"  - issuer: https://b.example\n    jwksUri: {b.jwks_uri}\n    timeout: 2s\n"
            )
            service = _service(policy, store, fetcher)
            await fetcher.track(service._store.generation.jwks_sources)
            second.body = jwks_of(NEW)  # the second issuer rotates
            token = NEW.sign(claims(iss="https://b.example", exp=int(time.time()) + 600))
            answer = await service.Check(_check(token), None)
            assert answer.status.code == code_pb2.OK
            assert (first.hits, second.hits) == (1, 2)
        await fetcher.close()

    run(scenario)

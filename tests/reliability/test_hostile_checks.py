"""Hostile CheckRequests (requests of the sample scenario, then mutated: odd methods, paths,
hosts, headers, tokens, addresses, principals, SNI, context_extensions, raw header maps,
flipped wire bytes, parts missing, nothing at all). Whatever arrives:

- Check answers, with a proper CheckResponse (OK, or a 401/403 denial), and never raises;
- a service that has seen everything before (its decision memo, route and token caches
  full of earlier requests) answers exactly as a brand-new service deciding afresh, so no
  history can turn a denial into an allow;
- the service still answers the sample matrix afterwards, and a real `extauthz serve`
  stays up with bounded memory.

Set EXTAUTHZ_RELIABILITY_EXAMPLES (default 1000) for a longer run of the property, and
EXTAUTHZ_RELIABILITY_CHECKS (default 3000) for the process-level one."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf.message import DecodeError
from google.rpc import code_pb2
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from extauthz.authn.key_store import KeyStore
from extauthz.config.workload import Workload, parse_labels
from extauthz.server.grpc_service import AuthorizationService
from extauthz.server.logs import DecisionLogger
from extauthz.server.metrics import Metrics
from extauthz.snapshot.store import ConfigStore
from tests.reliability.support import (
    GATEWAY_LABELS,
    GATEWAY_NAMESPACE,
    Hostile,
    ServeProcess,
    answer_problem,
    answered_status,
    hostile_config,
    hostile_request,
    hostile_requests,
    matrix_request,
    mutated,
    sample_matrix,
)

EXAMPLES = int(os.environ.get("EXTAUTHZ_RELIABILITY_EXAMPLES", "1000"))
CHECKS = int(os.environ.get("EXTAUTHZ_RELIABILITY_CHECKS", "3000"))
GARBAGE = 300  # raw byte strings sent as a Check's body, most of them no CheckRequest at all
# RSS growth allowed while a served process answers CHECKS hostile requests (after a warm-up
# of 300). What it keeps is held by caches bounded in entries (decision memo: 4,096 keys of
# at most 8 KiB; responses and decision-line fragments: 4,096 each; routes and workloads:
# 1,024; tokens: 10,000), which a few thousand requests of these kinds fill only in part
# (measured: +13 MiB for 3,000, +34 MiB for 30,000). 64 MiB leaves room for allocator slack
# and is far below what a single cache keeping the 256 KB values these requests carry would
# take (one such cache took ~730 MB).
HOSTILE_GROWTH_MIB = 64


@dataclass
class InProcess:
    """One long-lived AuthorizationService, and brand-new ones over the same configuration
    and keys to decide a request afresh (no memo, route or token cache history)."""

    store: ConfigStore
    keys: KeyStore
    metrics: Metrics = field(default_factory=Metrics)
    fresh_metrics: Metrics = field(default_factory=Metrics)
    service: AuthorizationService = field(init=False)

    def __post_init__(self) -> None:
        self.service = AuthorizationService(
            self.store, self.keys, self.metrics, decision_logger=DecisionLogger("all")
        )

    def fresh(self) -> AuthorizationService:
        return AuthorizationService(
            self.store, self.keys, self.fresh_metrics, decision_logger=DecisionLogger("none")
        )

    @property
    def internal_errors(self) -> float:
        return float(self.metrics.check_errors._value.get())


def in_process(configs: list[Path]) -> InProcess:
    workload = Workload(GATEWAY_NAMESPACE, parse_labels(GATEWAY_LABELS))
    store = ConfigStore([str(path) for path in configs], workload, GATEWAY_NAMESPACE)
    generation = store.build()
    assert generation is not None
    store.swap(generation)
    return InProcess(store, KeyStore())


@contextmanager
def decision_lines() -> Iterator[io.StringIO]:
    """The extauthz.decision logger writing INFO lines to a buffer (and nowhere else), so
    Check writes every decision line while the test runs, as `serve` does."""
    logger = logging.getLogger("extauthz.decision")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    buffer = io.StringIO()
    logger.handlers[:] = [logging.StreamHandler(buffer)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield buffer
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def wire(response: external_auth_pb2.CheckResponse) -> bytes:
    return bytes(response.SerializeToString(deterministic=True))


def assert_answers_alike(
    hostile: Hostile,
    answer: external_auth_pb2.CheckResponse,
    fresh: external_auth_pb2.CheckResponse,
) -> None:
    problem = answer_problem(answer)
    assert problem is None, f"{problem} for {hostile}"
    if answer.status.code == code_pb2.OK:
        assert fresh.status.code == code_pb2.OK, (
            f"allowed, but denied when decided afresh ({answered_status(fresh)}): {hostile}"
        )
    assert wire(answer) == wire(fresh), f"answer differs from a fresh decision: {hostile}"


def test_hostile_checks_are_answered_as_a_fresh_service_would(tmp_path: Path) -> None:
    """In process, on one event loop: every failure comes out as the exception itself
    (through gRPC it would be a status), thousands of examples take seconds, and a
    brand-new service can decide the same request object as the one with a history.
    (Both share the generation's per-workload snapshots; each has its own built responses;
    the served test below shares nothing.)"""
    world = in_process(hostile_config(tmp_path))
    with asyncio.Runner() as runner, decision_lines() as lines:

        def ask(service: AuthorizationService, hostile: Hostile) -> external_auth_pb2.CheckResponse:
            answer: object = runner.run(service.Check(hostile.request, None))
            assert isinstance(answer, external_auth_pb2.CheckResponse), f"{answer!r}: {hostile}"
            return answer

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=3))
        def check_hostile(rng: random.Random, neighbours: int) -> None:
            hostile = hostile_request(rng)
            for index in range(neighbours):
                if index:  # a neighbour: most of its memo key is the previous request's
                    hostile = mutated(rng, hostile)
                note(str(hostile))
                # Twice: the second answer may be the remembered one.
                answers = [ask(world.service, hostile) for _ in range(2)]
                fresh = ask(world.fresh(), hostile)
                assert answer_problem(fresh) is None, f"{answer_problem(fresh)}: {hostile}"
                for answer in answers:
                    assert_answers_alike(hostile, answer, fresh)

        check_hostile()

        # Still usable: the sample matrix, from the service with all that history.
        for path, token, status in sample_matrix():
            answer = runner.run(world.service.Check(matrix_request(path, token), None))
            assert answered_status(answer) == status, (path, token)
        # The run reached the memo, and every denial was one the code names, not the catch-all.
        assert world.service.memo.hits > 0
        assert world.internal_errors == 0
        written = lines.getvalue().splitlines()
        assert len(written) > EXAMPLES
        assert all(isinstance(json.loads(line)["reason"], str) for line in written)


def ask_raw(channel: grpc.Channel, body: bytes) -> external_auth_pb2.CheckResponse | None:
    """Send bytes as a Check's request body; None when the server refused to parse them."""
    call = channel.unary_unary(
        "/envoy.service.auth.v3.Authorization/Check",
        request_serializer=None,
        response_deserializer=external_auth_pb2.CheckResponse.FromString,
    )
    try:
        answer: external_auth_pb2.CheckResponse = call(body, timeout=30)
    except grpc.RpcError as error:
        # grpc.aio reports a body that does not parse as UNKNOWN ("Unexpected DecodeError"),
        # the synchronous server as INTERNAL; no Check ran either way.
        assert error.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), error
        assert "pars" in str(error.details()), error
        return None
    return answer


def parsed(body: bytes) -> external_auth_pb2.CheckRequest | None:
    request = external_auth_pb2.CheckRequest()
    try:
        request.ParseFromString(body)
    except DecodeError:
        return None
    return request


LABELS = {code_pb2.OK: "allow", code_pb2.PERMISSION_DENIED: "deny", code_pb2.UNAUTHENTICATED: "unauthenticated"}  # fmt: skip
IN_FLIGHT = 64


def batched(hostiles: Iterator[Hostile]) -> Iterator[list[Hostile]]:
    batch: list[Hostile] = []
    for hostile in hostiles:
        batch.append(hostile)
        if len(batch) == IN_FLIGHT:
            yield batch
            batch = []
    if batch:
        yield batch


def test_a_served_process_survives_thousands_of_hostile_checks(tmp_path: Path) -> None:
    """`extauthz serve` over gRPC: seeded hostile requests, 64 at a time, and raw garbage
    bodies; each answer is the one a fresh in-process service gives; the process stays up
    and its RSS bounded."""
    configs = hostile_config(tmp_path)
    world = in_process(configs)
    rng = random.Random(20240612)
    with (
        asyncio.Runner() as runner,
        ServeProcess(tmp_path, configs) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check

        def ask(batch: list[Hostile]) -> list[str]:
            """Send a batch at once (IN_FLIGHT Checks in flight), then compare each answer
            with a fresh in-process decision; the answers' decision labels."""
            calls = [check.future(hostile.request, timeout=30) for hostile in batch]
            labels = []
            for hostile, call in zip(batch, calls, strict=True):
                answer = call.result()
                fresh = runner.run(world.fresh().Check(hostile.request, None))
                assert_answers_alike(hostile, answer, fresh)
                labels.append(LABELS[answer.status.code])
            return labels

        for batch in batched(hostile_requests(seed=1, count=300)):  # warm-up
            ask(batch)
        before = server.rss_mib()
        tally = dict.fromkeys(("allow", "deny", "unauthenticated", "unparsed", "parsed"), 0)
        for batch in batched(hostile_requests(seed=2, count=CHECKS)):
            for label in ask(batch):
                tally[label] += 1
        for _ in range(GARBAGE):
            body = rng.randbytes(rng.choice((0, 1, 7, 64, 1024, 65_536)))
            answer = ask_raw(channel, body)
            request = parsed(body)
            if answer is None:
                assert request is None, f"the server refused bytes that parse: {body[:64]!r}"
                tally["unparsed"] += 1
                continue
            assert request is not None
            tally["parsed"] += 1
            fresh = runner.run(world.fresh().Check(request, None))
            assert_answers_alike(Hostile(request, (f"garbage:{body[:32]!r}",)), answer, fresh)
        after = server.rss_mib()

        assert server.is_running
        for path, token, status in sample_matrix():
            assert answered_status(check(matrix_request(path, token), timeout=30)) == status
        errors = server.metric("extauthz_check_errors_total")
        print(
            f"\n{CHECKS} hostile Checks and {GARBAGE} garbage bodies: {tally}; "
            f"RSS of extauthz serve (MiB): {before:.1f} after a warm-up of 300, "
            f"{after:.1f} after (+{after - before:.1f}), peak {server.peak_rss_mib():.1f}; "
            f"internal errors {errors:g}"
        )
        assert errors == 0
        assert after - before < HOSTILE_GROWTH_MIB

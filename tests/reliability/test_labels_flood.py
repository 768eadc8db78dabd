"""Per-route workloads named by context_extensions, sent by a hostile or broken client: a real
`extauthz serve` refuses oversize or malformed `namespace`/`labels` values with a logged 403,
keeps no memory for them, and still answers the sample matrix afterwards.

Before the limit, 722 Checks each with a different 256 KB `labels` value took the server
from 82 to 809 MB of RSS: every value was a key of the per-route cache (1,024 entries, no
size bound)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from extauthz.server.grpc_service import MAX_CONTEXT_EXTENSION_CHARS
from tests.reliability.support import (
    SAMPLE_POLICIES,
    ServeProcess,
    answered_status,
    matrix_request,
    metadata_reason,
    sample_matrix,
    sample_request,
    wait_for,
)

Check = Callable[[external_auth_pb2.CheckRequest], external_auth_pb2.CheckResponse]
LIMIT = MAX_CONTEXT_EXTENSION_CHARS
OVERSIZE = 256 * 1024  # characters of each flooding labels value
FLOOD = 700  # distinct oversize values
ROUTES = 1_100  # distinct legitimate 4,000-character values: past the 1,024-entry route cache
RBAC_BODY = "RBAC: access denied"
TEST_EXCLUDE = "denied by DENY policy istio-system/test-exclude"
# Growth allowed over each flood. Refused values are kept nowhere, so the oversize flood may
# only cost allocator slack (measured: +1 to +2 MiB); 16 MiB is 64 of its values, and under
# 5% of what this same flood kept before the limit (+353 MiB, measured on the code without
# it). Legitimate route names are kept by design: at most 1,024 routes x (a 4,000-char key,
# its parsed Workload and Snapshot), and the decision memo may keep up to 4,096 of those
# snapshots alive (measured: +10 MiB for 1,100 routes); 48 MiB covers that.
OVERSIZE_GROWTH_MIB = 16
ROUTES_GROWTH_MIB = 48


def oversize_reason(name: str, size: int) -> str:
    return f"context_extensions {name} is {size} characters long, over the limit of {LIMIT}"


def named_route(index: int, size: int) -> str:
    """A legitimate labels value naming the gateway workload, distinct per index."""
    text = f"app=istio-ingressgateway,route=r{index:06d},pad="
    return text + "p" * (size - len(text))


def flooding_labels(index: int) -> str:
    return named_route(index, OVERSIZE)


def with_extensions(
    request: external_auth_pb2.CheckRequest, **extensions: str
) -> external_auth_pb2.CheckRequest:
    request.attributes.context_extensions.update(extensions)
    return request


@contextmanager
def serving(workdir: Path) -> Iterator[tuple[ServeProcess, Check]]:
    """`extauthz serve` for the sample gateway, and its Check over gRPC."""
    with (
        ServeProcess(workdir, [SAMPLE_POLICIES]) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        yield server, lambda request: stub.Check(request, timeout=30)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Check]]:
    """One server for the table of single requests (its memory is not measured)."""
    with serving(tmp_path_factory.mktemp("limits")) as running:
        yield running


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[ServeProcess, Check]]:
    """A server of its own, whose memory only this test's requests have touched."""
    with serving(tmp_path) as running:
        yield running


def assert_matrix(check: Check) -> None:
    answers = {
        (path, token): answered_status(check(matrix_request(path, token)))
        for path, token, _ in sample_matrix()
    }
    assert answers == {(path, token): status for path, token, status in sample_matrix()}


@pytest.mark.parametrize(
    ("extensions", "status", "reason"),
    [
        ({"labels": "l" * (LIMIT + 1)}, 403, oversize_reason("labels", LIMIT + 1)),
        ({"namespace": "n" * (LIMIT + 1)}, 403, oversize_reason("namespace", LIMIT + 1)),
        ({"namespace": "foo", "labels": "x" * OVERSIZE}, 403, oversize_reason("labels", OVERSIZE)),
        ({"labels": "é" * (LIMIT + 1)}, 403, oversize_reason("labels", LIMIT + 1)),
        ({"labels": "a,b"}, 403, "context_extensions labels: label 'a' is not key=value"),
        ({"labels": "=x"}, 403, "context_extensions labels: label '=x' is not key=value"),
        ({"labels": named_route(1, LIMIT)}, 403, TEST_EXCLUDE),
        ({"namespace": "n" * LIMIT}, 403, TEST_EXCLUDE),
        ({"namespace": "foo", "labels": "app=web"}, 200, "no ALLOW policy applies"),
    ],
    ids=[
        "labels-one-over-the-limit",
        "namespace-one-over-the-limit",
        "labels-256k-for-another-namespace",
        "labels-multibyte-over-the-limit-in-characters",
        "labels-pair-without-equals",
        "labels-pair-without-key",
        "labels-at-the-limit-name-the-gateway",
        "namespace-at-the-limit-keeps-the-gateway-labels",
        "another-workload-is-not-the-gateway",
    ],
)
def test_context_extensions_at_and_over_the_limit(
    shared: tuple[ServeProcess, Check], extensions: dict[str, str], status: int, reason: str
) -> None:
    server, check = shared
    errors = server.metric("extauthz_check_errors_total")
    answer = check(with_extensions(sample_request("/api/v1/products/0"), **extensions))
    assert answered_status(answer) == status
    assert metadata_reason(answer) == reason
    if status == 403:
        assert answer.denied_response.body == RBAC_BODY
    wait_for(
        lambda: any(line["reason"] == reason for line in server.decision_lines()),
        f"a decision line with reason {reason!r}",
    )
    assert server.metric("extauthz_check_errors_total") == errors


def test_a_flood_of_distinct_256k_labels_is_refused_and_kept_nowhere(
    own: tuple[ServeProcess, Check],
) -> None:
    server, check = own
    assert_matrix(check)
    # Warm up every path the floods take, so the baseline holds what a first use allocates.
    for index in range(-20, 0):
        check(with_extensions(sample_request("/productpage"), labels=flooding_labels(index)))
        check(with_extensions(sample_request("/productpage"), labels=named_route(index, 4000)))
    before = server.rss_mib()

    refused = oversize_reason("labels", OVERSIZE)
    for index in range(FLOOD):
        path = ("/productpage", "/api/v1/products/0")[index % 2]
        answer = check(with_extensions(sample_request(path), labels=flooding_labels(index)))
        assert answer.status.code == code_pb2.PERMISSION_DENIED, index
        assert answer.denied_response.status.code == 403, index
        assert answer.denied_response.body == RBAC_BODY, index
        assert metadata_reason(answer) == refused, index
    after_flood = server.rss_mib()

    # Legitimate route names, each distinct and under the limit: decided like the gateway.
    for index in range(ROUTES):
        path, status = (("/productpage", 200), ("/api/v1/products/0", 403))[index % 2]
        answer = check(with_extensions(sample_request(path), labels=named_route(index, 4000)))
        assert answered_status(answer) == status, index
    after_routes = server.rss_mib()

    wait_for(
        lambda: sum(line["reason"] == refused for line in server.decision_lines()) >= FLOOD + 20,
        f"{FLOOD + 20} decision lines with reason {refused!r}",
    )
    assert all(
        (line["decision"], line["status"]) == ("deny", 403)
        for line in server.decision_lines()
        if line["reason"] == refused
    )
    assert server.is_running
    assert_matrix(check)
    assert server.metric("extauthz_check_errors_total") == 0
    print(
        f"\nRSS of extauthz serve (MiB): {before:.1f} after warm-up, {after_flood:.1f} after "
        f"{FLOOD} distinct {OVERSIZE}-char labels (+{after_flood - before:.1f}), "
        f"{after_routes:.1f} after {ROUTES} distinct 4000-char route names "
        f"(+{after_routes - after_flood:.1f}); peak {server.peak_rss_mib():.1f}"
    )
    assert after_flood - before < OVERSIZE_GROWTH_MIB
    assert after_routes - after_flood < ROUTES_GROWTH_MIB

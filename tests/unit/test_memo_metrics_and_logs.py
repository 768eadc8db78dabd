"""Remembered answers still count and log like fresh ones (metrics.py, logs.py), and the
local check histogram matches prometheus_client's."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from extauthz.server.logs import DecisionLogger
from extauthz.server.metrics import (
    _LATENCY_BUCKETS,
    ALLOWED,
    DENIED_BY_POLICY,
    INTERNAL_ERROR,
    _LocalCheckCounts,
)
from tests.support.checks import (
    ALICE,
    BASE,
    DENIED,
    OK,
    InProcess,
    authn,
    bearer,
    codes,
    op,
    policy,
    serve,
    wire,
)

# --- 1. remembered answers still count and log -------------------------------------------


def _exposition(served: InProcess) -> str:
    return served.metrics.exposition().decode()


def test_hits_count_in_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    yaml_text = policy(op("paths: [/admin]"), action="DENY", name="deny-admin")
    yaml_text += policy(op("methods: [GET]"), action="AUDIT", name="audit-get")
    served = serve(tmp_path, yaml_text)
    served.metrics.watch_memo(served.service.memo)
    admin = replace(BASE, path="/admin")
    answers = served.check(*[BASE] * 5, *[admin] * 3)
    assert codes(answers) == [OK] * 5 + [DENIED] * 3
    assert served.service.memo.hits == 6
    text = _exposition(served)
    assert 'extauthz_checks_total{decision="allow",reason="ok"} 5.0' in text
    assert 'extauthz_checks_total{decision="deny",reason="policy"} 3.0' in text
    assert 'extauthz_checks_total{decision="unauthenticated",reason="Jwt is expired"} 0.0' in text
    assert "extauthz_check_duration_seconds_count 8.0" in text
    assert 'extauthz_check_duration_seconds_bucket{le="+Inf"} 8.0' in text
    assert 'extauthz_policy_matches_total{action="DENY",mode="enforced",policy="foo/deny-admin"} 3.0' in text  # fmt: skip
    assert 'extauthz_policy_matches_total{action="AUDIT",mode="audit",policy="foo/audit-get"} 8.0' in text  # fmt: skip
    assert 'extauthz_decision_memo_lookups_total{result="hit"} 6.0' in text
    assert 'extauthz_decision_memo_lookups_total{result="miss"} 2.0' in text
    assert "extauthz_decision_memo_entries 2.0" in text


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "extauthz.decision"]


def test_every_check_logs_its_own_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    served = serve(tmp_path, policy(op("paths: [/p]")), logger=DecisionLogger("all"))
    ids = [BASE.with_headers(x_request_id=f"id-{n}") for n in range(3)]
    elsewhere = replace(ids[0], path="/q", source_ip="10.7.7.7").with_headers(x_request_id="id-q")
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        answers = served.check(*ids, elsewhere, elsewhere.with_headers(x_request_id="id-q2"))
    assert served.service.memo.hits == 3  # x-request-id is not part of the key
    assert {wire(a) for a in answers[:3]} == {wire(answers[0])}
    lines = _lines(caplog)
    assert [line["request_id"] for line in lines] == ["id-0", "id-1", "id-2", "id-q", "id-q2"]
    assert [line["path"] for line in lines] == ["/p", "/p", "/p", "/q", "/q"]
    assert [line["source_ip"] for line in lines] == ["192.0.2.10"] * 3 + ["10.7.7.7"] * 2
    assert [line["decision"] for line in lines] == ["allow"] * 3 + ["deny"] * 2
    assert all(line["policy"] == "" and line["generation"] == 1 for line in lines[3:])


def test_remembered_denials_log_with_mode_denials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(tmp_path, authn() + policy(op("paths: [/p]")), logger=DecisionLogger("denials"))  # fmt: skip
    denied = replace(BASE, path="/q", headers=bearer(ALICE))
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        served.check(BASE, BASE, denied.with_headers(x_request_id="r1"), denied.with_headers(x_request_id="r2"))  # fmt: skip
    assert served.service.memo.hits == 2
    lines = _lines(caplog)
    assert [(line["request_id"], line["decision"]) for line in lines] == [("r1", "deny"), ("r2", "deny")]  # fmt: skip
    assert {line["subject"] for line in lines} == {"alice"}


# --- 2. the local histogram --------------------------------------------------------------


def _series(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_local_check_counts_expose_cumulative_buckets() -> None:
    counts = _LocalCheckCounts()
    registry = CollectorRegistry()
    registry.register(counts)
    expired = ("unauthenticated", "Jwt is expired")
    for labels, seconds in ((ALLOWED, 0.00005), (ALLOWED, 0.0003), (DENIED_BY_POLICY, 0.2), (expired, 5.0)):  # fmt: skip
        counts.record(labels, seconds)
    text = generate_latest(registry).decode()
    assert _series(text, "extauthz_check_duration_seconds_bucket") == [
        'extauthz_check_duration_seconds_bucket{le="0.0001"} 1.0',
        'extauthz_check_duration_seconds_bucket{le="0.00025"} 1.0',
        'extauthz_check_duration_seconds_bucket{le="0.0005"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.001"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.0025"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.005"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.01"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.025"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.05"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.1"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.5"} 3.0',
        'extauthz_check_duration_seconds_bucket{le="+Inf"} 4.0',
    ]
    [count] = _series(text, "extauthz_check_duration_seconds_count")
    assert count == "extauthz_check_duration_seconds_count 4.0"
    [total] = _series(text, "extauthz_check_duration_seconds_sum")
    assert float(total.split()[1]) == pytest.approx(5.20035)
    assert 'extauthz_checks_total{decision="allow",reason="ok"} 2.0' in text
    assert 'extauthz_checks_total{decision="deny",reason="policy"} 1.0' in text
    assert 'extauthz_checks_total{decision="unauthenticated",reason="Jwt is expired"} 1.0' in text


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param([0.0001, 0.00025, 0.5], id="on-the-bounds"),
        pytest.param([0.0, 1e-9, 0.00010001, 0.49, 0.51, 60.0], id="around-the-bounds"),
        pytest.param([0.003, 0.003, 0.02, 0.07, 0.3], id="middle"),
    ],
)
def test_local_buckets_match_prometheus_clients_histogram(seconds: list[float]) -> None:
    counts, local = _LocalCheckCounts(), CollectorRegistry()
    local.register(counts)
    reference = CollectorRegistry()
    histogram = Histogram("extauthz_check_duration_seconds", "d", buckets=_LATENCY_BUCKETS, registry=reference)  # fmt: skip
    for value in seconds:
        counts.record(ALLOWED, value)
        histogram.observe(value)
    prefixes = ("extauthz_check_duration_seconds_bucket", "extauthz_check_duration_seconds_count")
    for prefix in prefixes:
        assert _series(generate_latest(local).decode(), prefix) == _series(
            generate_latest(reference).decode(), prefix
        )


def test_count_without_duration_and_policy_matches() -> None:
    counts, registry = _LocalCheckCounts(), CollectorRegistry()
    registry.register(counts)
    counts.count(INTERNAL_ERROR)
    counts.count_policies((("foo/p", "DENY", "enforced"), ("foo/a", "AUDIT", "audit")))
    counts.count_policies((("foo/p", "DENY", "enforced"),))
    text = generate_latest(registry).decode()
    assert 'extauthz_checks_total{decision="deny",reason="error"} 1.0' in text
    assert "extauthz_check_duration_seconds_count 0.0" in text
    assert 'extauthz_policy_matches_total{action="DENY",mode="enforced",policy="foo/p"} 2.0' in text  # fmt: skip
    assert 'extauthz_policy_matches_total{action="AUDIT",mode="audit",policy="foo/a"} 1.0' in text  # fmt: skip

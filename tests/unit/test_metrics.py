"""extauthz_checks_total's (decision, reason) labels (extauthz/server/metrics.py): a closed set,
Envoy's words for 401s, every combination exposed from the start, the same in one process
and with --workers' multiprocess files."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from extauthz.authn.result import AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.decision import Decision, Verdict, refused
from extauthz.server.metrics import (
    ALLOWED,
    CHECK_LABELS,
    DENIED_BY_POLICY,
    INTERNAL_ERROR,
    OTHER_UNAUTHENTICATED,
    REFUSED,
    Metrics,
    check_labels,
)
from tests.support.checks import BASE, TOKENS, Req, authn, bearer, op, policy, serve

FIXED_REASONS = {"ok", "policy", "refused", "error", "other"}


def _checks(exposition: str) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(exposition)
    return {
        (sample.labels["decision"], sample.labels["reason"]): sample.value
        for family in families
        if family.name == "extauthz_checks"
        for sample in family.samples
        if sample.name == "extauthz_checks_total"
    }


def _unauthenticated(status: JwtStatus) -> Decision:
    return Decision(Verdict.UNAUTHENTICATED, status.http_status, status.name, AuthnResult(status))


def test_the_label_set_is_closed_and_names_every_jwt_failure_in_envoys_words() -> None:
    assert len(set(CHECK_LABELS)) == len(CHECK_LABELS)
    reasons = {reason for _, reason in CHECK_LABELS}
    failures = {status.message for status in JwtStatus if status is not JwtStatus.Ok}
    assert reasons == FIXED_REASONS | failures
    assert {decision for decision, _ in CHECK_LABELS} == {v.value for v in Verdict}


@pytest.mark.parametrize(
    "status", [s for s in JwtStatus if s is not JwtStatus.Ok], ids=lambda s: s.name
)
def test_an_unauthenticated_decision_is_labelled_with_envoys_message(status: JwtStatus) -> None:
    assert check_labels(_unauthenticated(status)) == ("unauthenticated", status.message)


@pytest.mark.parametrize(
    ("decision", "labels"),
    [
        pytest.param(
            refused("context_extensions labels: bad"), REFUSED, id="refused-names-no-workload"
        ),
        pytest.param(
            _unauthenticated(JwtStatus.Ok),
            OTHER_UNAUTHENTICATED,
            id="status-without-a-label-is-other",
        ),
    ],
)
def test_decisions_outside_the_usual_paths(decision: Decision, labels: tuple[str, str]) -> None:
    assert check_labels(decision) == labels


@pytest.mark.parametrize(
    ("request_", "labels"),
    [
        pytest.param(BASE, ALLOWED, id="allowed"),
        pytest.param(replace(BASE, path="/admin"), DENIED_BY_POLICY, id="denied-by-policy"),
        pytest.param(
            replace(BASE, headers=bearer(TOKENS["expired"])),
            ("unauthenticated", "Jwt is expired"),
            id="expired",
        ),
        pytest.param(
            replace(BASE, headers=bearer(TOKENS["bad-signature"])),
            ("unauthenticated", "Jwt verification fails"),
            id="bad-signature",
        ),
        pytest.param(
            replace(BASE, headers=bearer(TOKENS["unknown-issuer"])),
            ("unauthenticated", "Jwt issuer is not configured"),
            id="unknown-issuer",
        ),
        pytest.param(
            replace(BASE, headers=bearer(TOKENS["garbage"])),
            ("unauthenticated", JwtStatus.JwtHeaderParseErrorBadJson.message),
            id="garbage-header",
        ),
        pytest.param(
            replace(BASE, extensions=(("labels", "no-equals"),)),
            REFUSED,
            id="labels-name-no-workload",
        ),
    ],
)
def test_a_check_and_its_remembered_repeat_count_under_the_same_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request_: Req, labels: tuple[str, str]
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    served = serve(
        tmp_path, authn() + policy(op("paths: [/admin]"), action="DENY", name="deny-admin")
    )
    before = _checks(served.metrics.exposition().decode())
    served.check(request_, request_)
    after = _checks(served.metrics.exposition().decode())
    assert {key: after[key] - before[key] for key in after if after[key] != before[key]} == {
        labels: 2.0
    }


# prometheus-client picks its value class when imported, so the --workers case (values in
# PROMETHEUS_MULTIPROC_DIR's files) runs in a process started with the variable set.
_RECORD_AND_PRINT = """
from extauthz.server.metrics import INTERNAL_ERROR, Metrics
metrics = Metrics()
print(metrics.exposition().decode(), end="\\f")
metrics.checks.record(("unauthenticated", "Jwt is missing"), 0.001)
metrics.checks.count(INTERNAL_ERROR)
print(metrics.exposition().decode(), end="")
"""


@pytest.mark.parametrize("multiprocess", [False, True], ids=["one-process", "workers-files"])
def test_every_combination_is_exposed_from_the_start_and_counts(
    tmp_path: Path, multiprocess: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", _RECORD_AND_PRINT], env=env, check=True,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    fresh, counted = (_checks(text) for text in done.stdout.split("\f"))
    assert fresh == dict.fromkeys(CHECK_LABELS, 0.0)
    assert set(counted) == set(CHECK_LABELS)
    assert {key: value for key, value in counted.items() if value} == {
        ("unauthenticated", "Jwt is missing"): 1.0,
        INTERNAL_ERROR: 1.0,
    }


def test_labels_outside_the_set_are_refused_not_added() -> None:
    metrics = Metrics()
    with pytest.raises(KeyError):
        metrics.checks.count(("unauthenticated", "anything a client sent"))
    assert set(_checks(metrics.exposition().decode())) == set(CHECK_LABELS)

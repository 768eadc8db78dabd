"""monitoring/: the alert and recording rules pass `promtool check rules` and their unit tests
(`promtool test rules`, series in, alerts out), every alert has a case where it fires and one
where it stays quiet, a summary, a description and a README runbook, every metric and label
the rules name is one extauthz exports (a rename fails here), and the k8s PrometheusRule holds
the same rules."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from extauthz.authn.key_store import KeyStore
from extauthz.authn.keys import KeySet
from extauthz.server.metrics import ALLOWED, Metrics
from tests.support.deploy_files import REPO
from tests.support.manifests import find

MONITORING = REPO / "monitoring"
RULE_FILES = sorted(MONITORING.glob("*.yaml"))
TEST_FILES = sorted((MONITORING / "tests").glob("*.yaml"))
README = REPO / "README.md"
# Labels Prometheus adds to every scraped series (the Prometheus Operator adds the others).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# A name not preceded or followed by `:` (those are recorded series, `job:extauthz_…:rate5m`).
METRIC = re.compile(r"(?<![\w:])extauthz_[a-z_]+(?![\w:])")
SELECTOR = re.compile(r"(?<![\w:])(extauthz_[a-z_]+)\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in _groups(path) for rule in group["rules"]]


def _groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _alert_params() -> list[Any]:
    return [pytest.param(rule, id=rule["alert"]) for rule in _alerts()]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            raise AssertionError("promtool is missing: `make test` installs Debian's prometheus")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return promtool


@functools.cache
def exported() -> dict[str, frozenset[str]]:
    """Every series name extauthz's registry exposes, with its label names: each metric given
    one value (a labelled counter shows no series before its first increment)."""
    metrics = Metrics()
    keys = KeyStore()
    keys.record_success("https://idp.example/jwks", KeySet(()), now=0.0)
    metrics.watch_keys(keys)
    metrics.watch_memo(_Memo())
    metrics.checks.record(ALLOWED, 0.001)
    metrics.checks.count_policies((("foo/deny", "DENY", "enforced"),))
    metrics.check_errors.inc()
    metrics.jwks_fetches.labels("https://idp.example/jwks", "ok").inc()
    metrics.jwks_refetches.labels("https://idp.example/jwks").inc()
    metrics.config_reloads.labels("ok").inc()
    metrics.config_generation.set(1)
    metrics.config_last_reload_ok.set(1)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


class _Memo:
    hits = 1
    misses = 1

    def __len__(self) -> int:
        return 1


def _expressions() -> Iterator[tuple[str, str]]:
    for rule in _rules():
        yield rule.get("alert") or rule["record"], rule["expr"]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_pass_promtool_check(path: Path) -> None:
    done = subprocess.run([_promtool(), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_rules_pass_their_unit_tests(path: Path) -> None:
    done = subprocess.run([_promtool(), "test", "rules", path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("alert", _alert_params())
def test_every_alert_fires_in_one_case_and_stays_quiet_in_another(alert: dict[str, Any]) -> None:
    cases = [
        case
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert["alert"]
    ]
    assert any(case.get("exp_alerts") for case in cases), f"{alert['alert']}: no firing case"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert['alert']}: no quiet case"


@pytest.mark.parametrize("alert", _alert_params())
def test_every_alert_says_what_to_do_and_has_a_runbook(alert: dict[str, Any]) -> None:
    annotations = alert["annotations"]
    assert annotations["summary"].strip()
    assert f"runbook ({alert['alert']})" in annotations["description"]
    assert alert["labels"]["severity"] in {"critical", "warning"}
    runbook = README.read_text().split("\n## Observability", 1)[-1].split("\n## ", 1)[0]
    assert re.search(rf"^#### `?{alert['alert']}`?\s*$", runbook, re.M), (
        f"README's Observability section has no runbook heading for {alert['alert']}"
    )


def test_rules_name_only_metrics_extauthz_exports() -> None:
    unknown = {
        (rule, name)
        for rule, expr in _expressions()
        for name in METRIC.findall(expr)
        if name not in exported()
    }
    assert not unknown, f"not exported by extauthz/server/metrics.py: {sorted(unknown)}"
    # The rules name something: the pattern has not silently stopped matching.
    assert {"extauthz_checks_total", "extauthz_jwks_keys"} <= {
        name for _, expr in _expressions() for name in METRIC.findall(expr)
    }


def test_recorded_series_used_by_rules_are_recorded_here() -> None:
    used = {
        name
        for _, expr in _expressions()
        for name in re.findall(r"[a-z_]+:extauthz_[a-z_]+:[a-z0-9_]+", expr)
    }
    assert used <= _recorded()


def test_rules_name_only_labels_extauthz_exports() -> None:
    labels_of = exported()
    problems = []
    for rule in _rules():
        name, expr = rule.get("alert") or rule["record"], rule["expr"]
        for metric, matchers in SELECTOR.findall(expr):
            for label in MATCHER_LABEL.findall(matchers):
                if label not in labels_of.get(metric, frozenset()) | TARGET_LABELS:
                    problems.append(f"{name}: {metric} has no label {label}")
        # Labels grouped on come from the metrics of the expression (or are recorded ones).
        known = set(TARGET_LABELS)
        for metric in METRIC.findall(expr):
            known |= labels_of.get(metric, frozenset())
        for recorded in re.findall(r"[a-z_]+:extauthz_[a-z_]+:[a-z0-9_]+", expr):
            known |= set(recorded.split(":", 1)[0].split("_"))  # job_decision: job, decision
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                if label not in known:
                    problems.append(f"{name}: groups on {label}, which its metrics lack")
        for text in rule.get("annotations", {}).values():
            for label in TEMPLATE_LABEL.findall(text):
                if label not in known:
                    problems.append(f"{name}: its annotations read $labels.{label}")
    assert not problems, "\n".join(problems)


def test_prometheus_rule_holds_the_same_rules() -> None:
    rule = find("PrometheusRule", "extauthz", "extauthz")
    monitor = find("ServiceMonitor", "extauthz", "extauthz")
    assert rule and monitor, "k8s/base/shared/monitoring: PrometheusRule next to the ServiceMonitor"
    assert rule.file.parent == monitor.file.parent
    assert rule.spec["groups"] == [g for path in RULE_FILES for g in _groups(path)]
    generated = subprocess.run([sys.executable, str(MONITORING / "prometheusrule.py")],
                               capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert rule.file.read_text() == generated.stdout, (
        "regenerate: .venv/bin/python monitoring/prometheusrule.py > "
        "k8s/base/shared/monitoring/prometheusrule.yaml"
    )

"""A real Prometheus (Debian's) scrapes a real extauthz, one as a single process and one with
--workers 2, while allows, policy denials and 401s flow through the rig's Envoys, the JWKS
server goes away and a reload is rejected (monitoring/live.py). Then every query of the
dashboard (monitoring/extauthz-dashboard.json) and every rule (monitoring/extauthz-rules.yaml),
read from those files, must return series with the labels its legend or annotations read,
and the alerts this run should raise are firing. A renamed metric or label fails here."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.live import (
    JOB,
    RULES,
    MonitoredRig,
    PanelQuery,
    Prometheus,
    Series,
    dashboard_queries,
    legend,
    make_trouble,
    traffic_round,
    variable_queries,
)

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 30.0
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")
# A comparison with a number filters series out; with `bool` it keeps them all (as 0 or 1),
# so the expression behind an alert is seen to return series whether it fires or not.
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)\s*(?=-?[\d.])")
# Alert `for:` durations are minutes; the copy of the rules Prometheus loads here has them at
# 0s. Two thresholds no short run reaches are lowered in the copy too, so that these alerts
# are seen firing from real series (the rest of each expression as written).
LOWERED = {
    "ExtauthzCheckLatencyHigh": ("> 0.1", "> 0"),
    "ExtauthzJwksKeysStale": ("> 3600", "> 3"),  # the JWKS server has been down 3 s
}


@dataclass(frozen=True, slots=True)
class Run:
    rig: MonitoredRig
    prometheus: Prometheus
    gateway: str  # instance labels
    sidecar: str
    good_uri: str
    dead_uri: str


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            raise AssertionError("prometheus is missing: `make tools` installs Debian's")
        pytest.skip("no prometheus binary (Debian package prometheus; `make tools` installs it)")
    return binary


def _rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def _fast_rules(path: Path) -> Path:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"] if "alert" in rule):
        rule["for"] = "0s"
        if rule["alert"] in LOWERED:
            written, lowered = LOWERED[rule["alert"]]
            assert written in rule["expr"], f"{rule['alert']}: the threshold changed, see LOWERED"
            rule["expr"] = rule["expr"].replace(written, lowered)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    binary = _prometheus_binary()
    workdir = Path(tmp_path_factory.mktemp("prometheus"))
    rules = _fast_rules(workdir / "rules.yaml")
    with MonitoredRig(workdir) as rig:
        targets = list(rig.metrics_targets)
        with Prometheus(binary, workdir, targets, [rules]) as prometheus:
            assert traffic_round(rig) == [200, 200, 403, 403, 401, 401, 401, 200, 401, 401, 200]
            make_trouble(rig)
            stop = threading.Event()
            traffic = threading.Thread(target=_keep_sending, args=(rig, stop), daemon=True)
            traffic.start()
            try:
                yield Run(
                    rig,
                    prometheus,
                    gateway=targets[0],
                    sidecar=targets[1],
                    good_uri=f"http://127.0.0.1:{rig.ports.jwks}/get_jwks",
                    dead_uri=rig.dead_jwks_uri,
                )
            finally:
                stop.set()
                traffic.join(10)


def _keep_sending(rig: MonitoredRig, stop: threading.Event) -> None:
    """Traffic through the whole module, so every rate has something to show."""
    while not stop.wait(0.2):
        traffic_round(rig)


def _eventually(what: str, attempt: Callable[[], str]) -> None:
    """Poll `attempt` (an empty string when satisfied, else what is missing) up to the
    deadline: Prometheus needs a few scrapes and evaluations to see a change."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        missing = attempt()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {missing}")
        time.sleep(0.25)


# -- the dashboard --------------------------------------------------------------------------


def _expected(run: Run) -> dict[str, dict[str, float | None]]:
    """Per panel title: legend texts that must be among its series (with their value when
    this run fixes it, None for any value)."""
    gw, sc, good, dead = run.gateway, run.sidecar, run.good_uri, run.dead_uri
    return {
        "Decisions/s by verdict": dict.fromkeys(["allow", "deny", "unauthenticated"]),
        "Decisions/s by verdict and reason": dict.fromkeys(
            [
                "allow: ok",
                "deny: policy",
                "unauthenticated: Jwt is expired",
                "unauthenticated: Jwt verification fails",
                "unauthenticated: Jwt issuer is not configured",
                "unauthenticated: Jwks remote fetch is failed",
            ]
        ),
        "401 reasons (Envoy's words)": dict.fromkeys(
            [
                "Jwt is expired",
                "Jwt verification fails",
                "Jwt issuer is not configured",
                "Jwks remote fetch is failed",
            ]
        ),
        "Top denying policies": {"istio-system/test-exclude": None},
        "Check latency p50 / p99": {f"{JOB} p50": None, f"{JOB} p99": None},
        "Check errors/s": {gw: 0.0, sc: 0.0},
        "JWKS keys per URI": {f"{good} {sc}": 1.0, f"{dead} {sc}": 0.0},
        "JWKS key age": {f"{good} {sc}": None},
        "JWKS fetches by result": {f"{good} ok": None, f"{dead} http_error": None},
        "Config generation": {gw: 2.0, sc: 1.0},  # one good reload, then a rejected one
        "Last reload": {gw: 0.0, sc: 1.0},
        "Decision memo hit ratio": {gw: None, sc: None},
    }


def _query_params() -> list[Any]:
    return [pytest.param(q, id=f"{q.panel}-{q.legend}") for q in dashboard_queries()]


def _legend_problems(
    query: PanelQuery, series: list[Series], wanted: dict[str, float | None]
) -> str:
    if not series:
        return "no series"
    needed = LEGEND_LABEL.findall(query.legend)
    unlabelled = [s.labels for s in series if not all(s.labels.get(name) for name in needed)]
    if unlabelled:
        return f"series without the labels {needed} the legend reads: {unlabelled}"
    shown = {legend(query.legend, s.labels): float(s.values[-1][1]) for s in series}
    relevant = {k: v for k, v in wanted.items() if k in shown or query.legend.startswith("{{")}
    missing = {k: v for k, v in relevant.items() if k not in shown or v not in (None, shown[k])}
    return f"wanted {missing}, got {shown}" if missing else ""


@pytest.mark.parametrize("query", _query_params())
def test_every_dashboard_query_returns_the_series_its_legend_reads(
    run: Run, query: PanelQuery
) -> None:
    expected = _expected(run)
    assert query.panel in expected, f"say what panel {query.panel!r} shows in this run"
    wanted = expected[query.panel]
    if query.panel == "Check latency p50 / p99":  # one query per quantile
        wanted = {k: v for k, v in wanted.items() if k.endswith(query.legend.split()[-1])}
    _eventually(
        f"{query.panel}: {query.expr}",
        lambda: _legend_problems(query, run.prometheus.query(query.expr), wanted),
    )


def test_every_panel_has_an_expectation(run: Run) -> None:
    assert {q.panel for q in dashboard_queries()} == set(_expected(run))


def test_the_variables_list_the_job_and_both_instances(run: Run) -> None:
    found = {
        name: run.prometheus.api(f"label/{label}/values", **{"match[]": selector})
        for name, label, selector in variable_queries()
    }
    assert found == {"job": [JOB], "instance": sorted([run.gateway, run.sidecar])}


# -- the rules ------------------------------------------------------------------------------


def _rule_params() -> list[Any]:
    return [pytest.param(rule, id=rule.get("alert") or rule["record"]) for rule in _rules()]


def _labels_problems(expr: str, series: list[Series], needed: set[str]) -> str:
    if not series:
        return f"no series for {expr}"
    lacking = [s.labels for s in series if not needed <= set(s.labels)]
    return f"{expr}: series without {sorted(needed)}: {lacking}" if lacking else ""


def _asking(prometheus: Prometheus, expr: str, needed: set[str]) -> Callable[[], str]:
    return lambda: _labels_problems(expr, prometheus.query(expr), needed)


@pytest.mark.parametrize("rule", _rule_params())
def test_every_rule_expression_returns_series_with_the_labels_it_uses(
    run: Run, rule: dict[str, Any]
) -> None:
    if "record" in rule:
        # level:metric:operations: the labels before the first colon, e.g. job_decision_reason.
        needed = set(rule["record"].split(":")[0].split("_"))
        parts = [rule["expr"], rule["record"]]
    else:
        needed = set()
        for text in rule.get("annotations", {}).values():
            needed |= set(TEMPLATE_LABEL.findall(text))
        # `a unless b`: each side on its own (b removes a's series when the alert is quiet).
        parts = [
            COMPARISON.sub(r"\1 bool ", part) for part in re.split(r"\bunless\b", rule["expr"])
        ]
    for part in parts:
        _eventually(part, _asking(run.prometheus, part, needed))


def _firing(run: Run) -> dict[str, dict[str, str]]:
    return {
        "ExtauthzConfigReloadFailing": {"instance": run.gateway},
        "ExtauthzJwksWithoutKeys": {"instance": run.sidecar, "uri": run.dead_uri},
        "ExtauthzJwksFetchFailing": {"instance": run.sidecar, "uri": run.dead_uri},
        "ExtauthzJwksKeysStale": {"instance": run.sidecar, "uri": run.good_uri},
        "ExtauthzCheckLatencyHigh": {"job": JOB},
    }


QUIET = {"ExtauthzCheckErrors"}  # no Check failed unexpectedly


def test_the_alerts_this_run_raises_are_firing_and_no_other(run: Run) -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    firing = _firing(run)
    assert alerts == set(firing) | QUIET, "say whether each alert fires in this run"

    def problems() -> str:
        raised = [(a["labels"], a["state"]) for a in run.prometheus.alerts()]
        missing = [
            name
            for name, labels in firing.items()
            if not any(
                got["alertname"] == name and labels.items() <= got.items() and state == "firing"
                for got, state in raised
            )
        ]
        unexpected = [got for got, _ in raised if got["alertname"] in QUIET]
        return f"not firing: {missing}; unexpected: {unexpected}" if missing or unexpected else ""

    _eventually("alerts", problems)
    for alert in run.prometheus.alerts():
        assert alert["annotations"]["summary"] and "{{" not in alert["annotations"]["summary"]
        assert "runbook" in alert["annotations"]["description"]

"""A real Prometheus scraping a real extauthz while traffic flows through Envoy: what
tests/e2e/test_prometheus.py asks questions of and monitoring/render.py draws.

    rig       the e2e rig (extauthz/rig/): the gateway's extauthz as one process, the
              sidecar's with --workers 2 (metrics from the multiprocess files), whose
              configuration also names a JWKS URI nothing answers
    traffic   allows, 403 denials by policy and 401s of several kinds, through both Envoys
    trouble   a JWKS outage (the rig's JWKS server stopped), a good then a bad reload
    queries   the dashboard's (its variables filled in as Grafana would) and the rules'
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from extauthz.rig.demo import http_get
from extauthz.rig.processes import Process, ProcessGroup, answers_200, free_port
from extauthz.rig.rig import SAMPLES, Rig
from extauthz.rig.tokens import invalid_tokens, mint

MONITORING = Path(__file__).resolve().parent
RULES = MONITORING / "extauthz-rules.yaml"
DASHBOARD = MONITORING / "extauthz-dashboard.json"
JOB = "extauthz"
SCRAPE_SECONDS = 1
# An issuer whose jwksUri nothing answers: its keys never arrive.
NO_KEYS_ISSUER = "https://no-keys.example"
# Grafana's values for the dashboard's variables: every instance of the job, a rate window
# that spans a short run, and the time range.
VARIABLES = {
    "$__rate_interval": "30s",
    "$__range": "5m",
    "$job": JOB,
    "$instance": ".+",
    "${datasource}": "prometheus",
}


# -- the rig ----------------------------------------------------------------------------------


class MonitoredRig(Rig):
    """The e2e rig, its sidecar extauthz with --workers 2 and a second, dead JWKS URI; the
    gateway's configuration in a file of its own, for reloads."""

    def __init__(self, workdir: Path) -> None:
        policies = workdir / "gateway-policies.yaml"
        shutil.copyfile(SAMPLES / "gateway-policies.yaml", policies)
        fast = ("--jwks-refresh", "1", "--watch-interval", "0.2")  # a run of seconds shows it
        super().__init__(workdir, gateway_policies=policies, extauthz_args=fast)
        self.dead_jwks_uri = f"http://127.0.0.1:{free_port()}/jwks"

    def _extauthz(
        self, name: str, policies: Path, namespace: str, labels: str, grpc: int, http: int
    ) -> Process:
        process = super()._extauthz(name, policies, namespace, labels, grpc, http)
        if name == "extauthz-sidecar":
            process.argv += ["--workers", "2"]
        return process

    def _sidecar_policies(self) -> Path:
        path = super()._sidecar_policies()
        path.write_text(path.read_text() + f"""
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: no-keys, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - {{issuer: "{NO_KEYS_ISSUER}", jwksUri: "{self.dead_jwks_uri}"}}
""")  # fmt: skip
        return path

    @property
    def metrics_targets(self) -> dict[str, str]:
        """instance -> which extauthz it is."""
        return {
            f"127.0.0.1:{self.ports.gateway_http}": "gateway",
            f"127.0.0.1:{self.ports.sidecar_http}": "sidecar (--workers 2)",
        }


def traffic_round(rig: MonitoredRig) -> list[int]:
    """One round of requests through both Envoys; the statuses, in order."""
    now = int(time.time())
    demo = {"authorization": f"Bearer {rig.demo_token}"}
    bad = {name: {"authorization": f"Bearer {token}"}
           for name, (token, _) in invalid_tokens(rig.demo_token, now).items()}  # fmt: skip
    no_keys = mint({"iss": NO_KEYS_ISSUER, "sub": "x", "exp": now + 3600})
    gateway, sidecar = rig.gateway_url, rig.sidecar_url
    requests = [
        (f"{gateway}/productpage", {}),  # allowed without a token
        (f"{gateway}/api/v1/products/1", demo),  # allowed
        (f"{gateway}/api/v1/products/1", {}),  # 403: test-exclude denies it
        (f"{gateway}/api/v1/products/2", {}),  # 403
        *((f"{gateway}/api/v1/products/1", headers) for headers in bad.values()),  # 401s
        (f"{sidecar}/headers", demo),  # allowed with keys fetched from the JWKS server
        (f"{sidecar}/headers", bad["expired"]),  # 401
        (f"{sidecar}/headers", {"authorization": f"Bearer {no_keys}"}),  # 401, no keys
        (f"{sidecar}/headers", {}),  # allowed: no RequestAuthentication asks for a token
    ]
    return [http_get(url, headers).status for url, headers in requests]


def reload_gateway(rig: MonitoredRig, text: str, generation: int | None) -> None:
    """Write the gateway's configuration; wait until /readyz shows `generation` serving
    (None: until the write was rejected)."""
    rig.gateway_policies.write_text(text)
    url = f"http://127.0.0.1:{rig.ports.gateway_http}/readyz"

    def done() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            state = json.load(response)
        if generation is None:
            return bool(state.get("last_config_error"))
        return bool(state.get("generation") == generation)

    rig.processes["extauthz-gateway"].wait_until(done, timeout=10)


def make_trouble(rig: MonitoredRig) -> None:
    """A good reload (generation 2), then a bad one (rejected, 2 keeps serving), and the
    JWKS server stopped (the sidecar's fetches fail, its cached keys age)."""
    good = rig.gateway_policies.read_text()
    reload_gateway(rig, good + "\n# reloaded\n", generation=2)
    reload_gateway(rig, good + "\n---\nkind: AuthorizationPolicy\nspec: [broken\n", None)
    rig.processes["jwks"].stop()


# -- Prometheus -------------------------------------------------------------------------------


class Prometheus(ProcessGroup):
    """Debian's prometheus on a free loopback port, with its own storage, scraping `targets`
    every second and evaluating `rule_files` every second."""

    def __init__(self, binary: str, workdir: Path, targets: list[str], rule_files: list[Path]):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        }
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        argv = [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.processes = {"prometheus": Process("prometheus", argv, workdir)}

    def start(self) -> Prometheus:
        process = self.processes["prometheus"]
        process.start()
        process.wait_until(answers_200(f"{self.url}/-/ready"))
        return self

    @property
    def pid(self) -> int:
        return self.processes["prometheus"].pid

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[Series]:
        data = self.api("query", query=expr)
        return [Series(r["metric"], [tuple(r["value"])]) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        return [Series(r["metric"], [tuple(v) for v in r["values"]]) for r in data["result"]]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[float, str]]


# -- the queries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PanelQuery:
    panel: str
    kind: str
    expr: str  # the variables filled in
    legend: str


def dashboard_queries(dashboard: Path = DASHBOARD, **variables: str) -> Iterator[PanelQuery]:
    """Every query of the dashboard's panels, as Grafana would send it (`variables`, e.g.
    __rate_interval="10s", replace the defaults in VARIABLES)."""
    for panel in json.loads(dashboard.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = fill(target["expr"], {f"${k}": v for k, v in variables.items()})
            yield PanelQuery(panel["title"], panel["type"], expr, target["legendFormat"])


def variable_queries(dashboard: Path = DASHBOARD) -> Iterator[tuple[str, str, str]]:
    """(variable, label, series selector) of each label_values() variable."""
    for variable in json.loads(dashboard.read_text())["templating"]["list"]:
        if variable["type"] == "query":
            inner = variable["definition"].removeprefix("label_values(").removesuffix(")")
            selector, label = (part.strip() for part in inner.rsplit(",", 1))
            yield variable["name"], label, fill(selector)


def fill(expr: str, overrides: dict[str, str] | None = None) -> str:
    for name, value in {**VARIABLES, **(overrides or {})}.items():
        expr = expr.replace(name, value)
    return expr


def legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return text

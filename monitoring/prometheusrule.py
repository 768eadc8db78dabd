"""Print monitoring/extauthz-rules.yaml as the Prometheus Operator's PrometheusRule, the file
k8s/base/shared/monitoring/prometheusrule.yaml holds (tests/packaging/test_monitoring_rules.py
checks they are the same rules):

    .venv/bin/python monitoring/prometheusrule.py > k8s/base/shared/monitoring/prometheusrule.yaml
"""

from __future__ import annotations

from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parent / "extauthz-rules.yaml"
HEADER = """\
# Generated from monitoring/extauthz-rules.yaml by monitoring/prometheusrule.py: edit those.
# The extauthz alert and recording rules for the Prometheus Operator. Your Prometheus may
# select PrometheusRules by a label (kube-prometheus-stack: release=<its release name>): add it.
"""


def prometheus_rule() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "extauthz",
            "namespace": "extauthz",
            "labels": {"app.kubernetes.io/name": "extauthz"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100)


if __name__ == "__main__":
    print(prometheus_rule(), end="")

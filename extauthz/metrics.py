"""Prometheus metrics, one registry per running service (so tests can start several).

With `--workers N` each worker process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and /metrics, answered by
whichever worker gets the scrape, adds up every worker's counters and histograms.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from extauthz import __version__
from extauthz.authn.jwks import KeyStore
from extauthz.authz.evaluate import AuthzVerdict

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._keys_collector: _KeyStoreCollector | None = None
        self.checks = Counter(
            "extauthz_checks",
            "Check calls answered, by decision (allow, deny, unauthenticated).",
            ["decision"],
            registry=self.registry,
        )
        self.check_duration = Histogram(
            "extauthz_check_duration_seconds",
            "Time to answer one Check call, conversion included.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.check_errors = Counter(
            "extauthz_check_errors",
            "Check calls that failed unexpectedly and were denied.",
            registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "extauthz_jwks_fetches",
            "JWKS fetches by URI and result (ok, http_error, timeout, invalid).",
            ["uri", "result"],
            registry=self.registry,
        )
        self.jwks_refetches = Counter(
            "extauthz_jwks_unknown_kid_refetches",
            "JWKS fetches triggered by a token whose key was unknown, by URI.",
            ["uri"],
            registry=self.registry,
        )
        self.policy_matches = Counter(
            "extauthz_policy_matches",
            "Policy rules that matched, by policy (namespace/name), action and mode "
            "(enforced, audit, dry_run).",
            ["policy", "action", "mode"],
            registry=self.registry,
        )
        self.config_generation = Gauge(
            "extauthz_config_generation",
            "Generation of the configuration now serving (starts at 1).",
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.config_last_reload_ok = Gauge(
            "extauthz_config_last_reload_success",
            "1 when the last configuration load succeeded, 0 when it was rejected.",
            multiprocess_mode="min",
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "extauthz_config_reloads",
            "Configuration loads by result (ok, error).",
            ["result"],
            registry=self.registry,
        )
        Gauge(
            "extauthz_build_info",
            "Build information (always 1).",
            ["version"],
            multiprocess_mode="max",
            registry=self.registry,
        ).labels(__version__).set(1)
        for decision in ("allow", "deny", "unauthenticated"):
            self.checks.labels(decision)

    def count_policies(self, authz: AuthzVerdict | None) -> None:
        if authz is None:
            return
        if authz.policy:
            action = "DENY" if not authz.is_allowed else "ALLOW"
            self.policy_matches.labels(authz.policy, action, "enforced").inc()
        for match in authz.audits:
            self.policy_matches.labels(match.policy, match.action, "audit").inc()
        for match in authz.dry_run:
            self.policy_matches.labels(match.policy, match.action, "dry_run").inc()

    def watch_keys(self, keys: KeyStore) -> None:
        self._keys_collector = _KeyStoreCollector(keys)
        self.registry.register(self._keys_collector)

    def exposition(self) -> bytes:
        multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not multiprocess_dir:
            return generate_latest(self.registry)
        # Every worker's files, added up; the key-set gauges are this worker's own view.
        combined = CollectorRegistry()
        MultiProcessCollector(combined, multiprocess_dir)  # type: ignore[no-untyped-call]
        if self._keys_collector is not None:
            combined.register(self._keys_collector)
        return generate_latest(combined)


class _KeyStoreCollector(Collector):
    """Key-set gauges read from the KeyStore at scrape time (URIs come from the config, so
    the label set is bounded)."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "extauthz_jwks_keys", "Usable keys in the cached key set, by URI.", labels=["uri"]
        )
        age = GaugeMetricFamily(
            "extauthz_jwks_age_seconds",
            "Seconds since the key set was last fetched successfully, by URI.",
            labels=["uri"],
        )
        now = time.time()
        for state in self._keys.states():
            count.add_metric([state.uri], len(state.keys) if state.keys else 0)
            if state.fetched_at is not None:
                age.add_metric([state.uri], now - state.fetched_at)
        yield count
        yield age

"""Prometheus metrics, one registry per running service (so tests can start several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from extauthz import __version__

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "JWKS fetches by result (ok, http_error, timeout, invalid).",
            ["result"],
            registry=self.registry,
        )
        self.config_generation = Gauge(
            "extauthz_config_generation",
            "Generation of the configuration now serving (starts at 1).",
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "extauthz_config_reloads",
            "Configuration loads by result (ok, error).",
            ["result"],
            registry=self.registry,
        )
        Info("extauthz_build", "Build information.", registry=self.registry).info(
            {"version": __version__}
        )
        for decision in ("allow", "deny", "unauthenticated"):
            self.checks.labels(decision)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

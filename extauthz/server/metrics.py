"""Prometheus metrics, one registry per running service (so tests can start several).

With `--workers N` each worker process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and /metrics, answered by
whichever worker gets the scrape, adds up every worker's counters and histograms.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from extauthz import __version__
from extauthz.authn.key_store import KeyStore
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import AuthzVerdict
from extauthz.decision import Decision, Verdict

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._own: list[Collector] = []  # this process's views, also with --workers
        # What every Check records: plain ints on the event loop's thread, read at scrape
        # time; with --workers, prometheus-client's multiprocess values (files) instead.
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.checks: CheckCounts = _SharedCheckCounts(self.registry)
        else:
            local = _LocalCheckCounts()
            self.registry.register(local)
            self.checks = local
        self.check_errors = Counter(
            "extauthz_check_errors",
            "Check calls that failed unexpectedly and were denied.",
            registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "extauthz_jwks_fetches",
            "JWKS fetches by URI and result (ok, http_error, timeout, invalid, too_many_keys).",
            ["uri", "result"],
            registry=self.registry,
        )
        self.jwks_refetches = Counter(
            "extauthz_jwks_unknown_kid_refetches",
            "JWKS fetches triggered by a token whose key was unknown, by URI.",
            ["uri"],
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

    def watch_keys(self, keys: KeyStore) -> None:
        self._watch(_KeyStoreCollector(keys))

    def watch_memo(self, memo: MemoStats) -> None:
        self._watch(_MemoCollector(memo))

    def _watch(self, collector: Collector) -> None:
        """A collector of this process's own state, read at scrape time."""
        self._own.append(collector)
        self.registry.register(collector)

    def exposition(self) -> bytes:
        multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not multiprocess_dir:
            return generate_latest(self.registry)
        # Every worker's files, added up; key sets and the memo are this worker's own view.
        combined = CollectorRegistry()
        MultiProcessCollector(combined, multiprocess_dir)  # type: ignore[no-untyped-call]
        for collector in self._own:
            combined.register(collector)
        return generate_latest(combined)


# The (decision, reason) labels of extauthz_checks_total: a closed set, all exposed from the
# start. A 401's reason is Envoy's own words (the body jwt_authn answers with), so a graph of
# them reads as what clients were told; a status without a label here counts as "other".
CheckLabels = tuple[str, str]
ALLOWED: CheckLabels = ("allow", "ok")
DENIED_BY_POLICY: CheckLabels = ("deny", "policy")
REFUSED: CheckLabels = (
    "deny",
    "refused",
)  # the request named no usable workload (context_extensions)
INTERNAL_ERROR: CheckLabels = (
    "deny",
    "error",
)  # the one broad except: also extauthz_check_errors_total
_UNAUTHENTICATED: dict[JwtStatus, CheckLabels] = {
    status: ("unauthenticated", status.message)
    for status in JwtStatus
    if status is not JwtStatus.Ok
}
OTHER_UNAUTHENTICATED: CheckLabels = ("unauthenticated", "other")
CHECK_LABELS: tuple[CheckLabels, ...] = (
    ALLOWED,
    DENIED_BY_POLICY,
    REFUSED,
    INTERNAL_ERROR,
    *_UNAUTHENTICATED.values(),
    OTHER_UNAUTHENTICATED,
)
_CHECKS_HELP = (
    "Check calls answered, by decision (allow, deny, unauthenticated) and reason (ok; policy, "
    "refused, error; Envoy's jwt_authn message for unauthenticated)."
)
_DURATION_HELP = "Time to answer one Check call, conversion included."
_POLICY_HELP = (
    "Policy rules that matched, by policy (namespace/name), action and mode "
    "(enforced, audit, dry_run)."
)


def check_labels(decision: Decision) -> CheckLabels:
    """The (decision, reason) labels a decision is counted under, one of CHECK_LABELS.
    Worked out once per remembered answer, not per request."""
    if decision.verdict is Verdict.ALLOW:
        return ALLOWED
    if decision.verdict is Verdict.DENY:
        return DENIED_BY_POLICY if decision.authz is not None else REFUSED
    return _UNAUTHENTICATED.get(decision.authn.status, OTHER_UNAUTHENTICATED)


def policy_matches(authz: AuthzVerdict | None) -> tuple[tuple[str, str, str], ...]:
    """(policy, action, mode) of every rule a verdict counts: the one that decided, then
    audits and dry runs. Worked out once per remembered answer, not per request."""
    if authz is None:
        return ()
    matches: list[tuple[str, str, str]] = []
    if authz.policy:
        matches.append((authz.policy, "ALLOW" if authz.is_allowed else "DENY", "enforced"))
    matches.extend((m.policy, m.action, "audit") for m in authz.audits)
    matches.extend((m.policy, m.action, "dry_run") for m in authz.dry_run)
    return tuple(matches)


class CheckCounts(Protocol):
    """`labels` is one of CHECK_LABELS (check_labels() or a constant next to it)."""

    def record(self, labels: CheckLabels, seconds: float) -> None: ...
    def count(self, labels: CheckLabels) -> None: ...  # a Check whose duration is not recorded
    def count_policies(self, matches: tuple[tuple[str, str, str], ...]) -> None: ...


class _LocalCheckCounts(Collector):
    """Counts as plain ints, touched only by the event loop's thread (Check and the /metrics
    handler share it), so recording one Check is a few additions: no lock, no label lookup.
    Exposed as extauthz_checks_total, extauthz_check_duration_seconds and
    extauthz_policy_matches_total, the same series prometheus-client's own types give."""

    def __init__(self) -> None:
        self._checks = dict.fromkeys(CHECK_LABELS, 0)
        self._bounds = _LATENCY_BUCKETS
        self._buckets = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._policies: dict[tuple[str, str, str], int] = {}

    def record(self, labels: CheckLabels, seconds: float) -> None:
        self._checks[labels] += 1
        self._buckets[bisect_left(self._bounds, seconds)] += 1  # `le`: bound >= seconds
        self._sum += seconds

    def count(self, labels: CheckLabels) -> None:
        self._checks[labels] += 1

    def count_policies(self, matches: tuple[tuple[str, str, str], ...]) -> None:
        for match in matches:
            self._policies[match] = self._policies.get(match, 0) + 1

    def collect(self) -> Iterator[Metric]:
        checks = CounterMetricFamily("extauthz_checks", _CHECKS_HELP, labels=["decision", "reason"])
        for labels, count in self._checks.items():
            checks.add_metric(list(labels), count)
        yield checks
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*map(floatToGoString, self._bounds), "+Inf"), self._buckets, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "extauthz_check_duration_seconds", _DURATION_HELP, buckets, self._sum
        )
        policies = CounterMetricFamily(
            "extauthz_policy_matches", _POLICY_HELP, labels=["policy", "action", "mode"]
        )
        for match, count in sorted(self._policies.items()):
            policies.add_metric(list(match), count)
        yield policies


class _SharedCheckCounts:
    """The same series through prometheus-client's types, whose values live in
    PROMETHEUS_MULTIPROC_DIR's files, so /metrics can add up every worker's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        checks = Counter("extauthz_checks", _CHECKS_HELP, ["decision", "reason"], registry=registry)
        self._children = {labels: checks.labels(*labels) for labels in CHECK_LABELS}
        self._duration = Histogram(
            "extauthz_check_duration_seconds",
            _DURATION_HELP,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._policies = Counter(
            "extauthz_policy_matches", _POLICY_HELP, ["policy", "action", "mode"],
            registry=registry,
        )  # fmt: skip

    def record(self, labels: CheckLabels, seconds: float) -> None:
        self._children[labels].inc()
        self._duration.observe(seconds)

    def count(self, labels: CheckLabels) -> None:
        self._children[labels].inc()

    def count_policies(self, matches: tuple[tuple[str, str, str], ...]) -> None:
        for match in matches:
            self._policies.labels(*match).inc()


class MemoStats(Protocol):
    hits: int
    misses: int

    def __len__(self) -> int: ...


class _MemoCollector(Collector):
    """How often a Check found its answer remembered (decision_memo.py)."""

    def __init__(self, memo: MemoStats) -> None:
        self._memo = memo

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "extauthz_decision_memo_lookups",
            "Checks that looked for a remembered answer, by result (hit, miss).",
            labels=["result"],
        )
        lookups.add_metric(["hit"], self._memo.hits)
        lookups.add_metric(["miss"], self._memo.misses)
        yield lookups
        yield GaugeMetricFamily(
            "extauthz_decision_memo_entries", "Answers remembered now.", len(self._memo)
        )


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

"""envoy.service.auth.v3.Authorization/Check: convert, decide, convert. Fails closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import VerifiedTokenCache
from extauthz.authn.jwks import KeyStore
from extauthz.config.compile import Snapshot
from extauthz.config.store import ConfigStore
from extauthz.config.workload import Workload, parse_labels
from extauthz.decision import decide, internal_error
from extauthz.envoy_api import to_attributes, to_response
from extauthz.logs import DecisionLogger
from extauthz.metrics import Metrics

log = logging.getLogger(__name__)

# Built once: the answer when even building an answer failed.
_LAST_RESORT = to_response(internal_error("response could not be built"))


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: ConfigStore,
        keys: KeyStore,
        metrics: Metrics,
        cache: VerifiedTokenCache | None = None,
        refetch: Callable[[str], Awaitable[bool]] | None = None,
        xff_num_trusted_hops: int = 0,
        decision_logger: DecisionLogger | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._metrics = metrics
        self._cache = cache if cache is not None else VerifiedTokenCache()
        self._refetch = refetch
        self._xff_hops = xff_num_trusted_hops
        self._decision_log = decision_logger or DecisionLogger()

    def _snapshot_for(self, attrs: RequestAttributes) -> Snapshot:
        """The CLI's workload, unless Envoy names one per route or listener with the
        context_extensions `namespace` and `labels` (one extauthz, several workloads)."""
        extensions = attrs.context_extensions
        if "namespace" not in extensions and "labels" not in extensions:
            return self._store.current
        default = self._store.workload
        workload = Workload(
            extensions.get("namespace") or default.namespace,
            parse_labels(extensions["labels"]) if "labels" in extensions else default.labels,
        )
        return self._store.generation.snapshot_for(workload)

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: Any
    ) -> external_auth_pb2.CheckResponse:
        started = time.perf_counter()
        try:
            attrs = to_attributes(request, self._xff_hops)
            snapshot = self._snapshot_for(attrs)
            decision = decide(attrs, snapshot, self._keys.keys, int(time.time()), self._cache)
            uri = decision.authn.jwks_uri
            if uri and self._refetch is not None and await self._refetch(uri):
                # The token's key was unknown (rotation) or never fetched: the edge fetched
                # the key set once (single-flight, rate-limited); decide again with it.
                decision = decide(attrs, snapshot, self._keys.keys, int(time.time()), self._cache)
            response = to_response(decision)
        except Exception as exc:  # the one broad except: any failure is a logged, counted deny
            log.exception("Check failed; denying")
            self._metrics.check_errors.inc()
            self._metrics.checks.labels("deny").inc()
            try:
                return to_response(internal_error(type(exc).__name__))
            except Exception:
                return _LAST_RESORT
        elapsed = time.perf_counter() - started
        self._metrics.checks.labels(decision.verdict.value).inc()
        self._metrics.check_duration.observe(elapsed)
        if decision.authz is not None and (
            decision.authz.policy or decision.authz.audits or decision.authz.dry_run
        ):
            self._metrics.count_policies(decision.authz)
        self._decision_log.log(attrs, decision, elapsed)
        return response

"""envoy.service.auth.v3.Authorization/Check: convert, decide, convert. Fails closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import TokenCache
from extauthz.authn.key_store import KeyStore
from extauthz.bounded import BoundedCache
from extauthz.config.workload import Workload, parse_labels
from extauthz.decision import (
    MAX_REJECTION_CHARS,
    MAX_REJECTIONS,
    Decision,
    Verdict,
    decide,
    internal_error,
    quoted_chars,
    refused,
    rejections,
)
from extauthz.decision_memo import DecisionMemo
from extauthz.records import record
from extauthz.server.envoy_api import (
    Responses,
    build_response,
    decision_key,
    log_fields,
    raw_header_map,
    to_attributes,
)
from extauthz.server.logs import DecisionLogger, request_fields
from extauthz.server.metrics import (
    INTERNAL_ERROR,
    REFUSED,
    Metrics,
    check_labels,
    policy_matches,
)
from extauthz.server.peer import PeerNames
from extauthz.snapshot.compile import Generation, Snapshot
from extauthz.snapshot.store import ConfigStore

log = logging.getLogger(__name__)

# Workloads named by context_extensions whose snapshot is found without parsing labels.
_MAX_ROUTE_WORKLOADS = 1024
# A `namespace` or `labels` context extension longer than this is refused (403): they name
# a workload (Kubernetes keeps a namespace to 63 characters and a pod's labels to a few
# hundred), and both are cache keys, so the route cache holds at most
# _MAX_ROUTE_WORKLOADS x 2 x this many characters.
MAX_CONTEXT_EXTENSION_CHARS = 4096
_MAX_QUOTED_CHARS = 200
# Built once: the answer when even building an answer failed.
_LAST_RESORT = build_response(internal_error("response could not be built"))


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: ConfigStore,
        keys: KeyStore,
        metrics: Metrics,
        cache: TokenCache | None = None,
        refetch: Callable[[str], Awaitable[bool]] | None = None,
        xff_num_trusted_hops: int = 0,
        decision_logger: DecisionLogger | None = None,
        payload_metadata: bool = False,
    ) -> None:
        self._store = store
        self._keys = keys
        self._metrics = metrics
        self._cache = cache if cache is not None else TokenCache()
        self._refetch = refetch
        self._xff_hops = xff_num_trusted_hops
        self._decision_log = decision_logger or DecisionLogger()
        self._counts = metrics.checks
        self._responses = Responses(payload_metadata=payload_metadata)
        self._peer_names = PeerNames()
        self.memo: DecisionMemo[_Answer] = DecisionMemo()  # public for tests and the bench
        # 401 decisions made (decide() makes one per distinct rejection) and the answers to
        # them, by the decision's identity (see _answer).
        self._rejections = rejections()
        self._rejected: BoundedCache[int, _Answer] = BoundedCache(
            MAX_REJECTIONS, max_entry_cost=MAX_REJECTION_CHARS
        )
        self._generation: Generation | None = None  # what the memo and the snapshot are of
        # Set with _generation, before any use: the CLI's workload's snapshot of it, and
        # the snapshots of workloads Envoy named, by their raw (namespace, labels) values.
        self._default_snapshot: Snapshot
        self._route_snapshots: BoundedCache[tuple[str | None, str | None], Snapshot] = BoundedCache(
            _MAX_ROUTE_WORKLOADS, max_entry_cost=2 * MAX_CONTEXT_EXTENSION_CHARS
        )

    def _snapshot_for(self, extensions: Mapping[str, str]) -> Snapshot | str:
        """The workload Envoy names per route or listener with the context_extensions
        `namespace` and `labels` (one extauthz, several workloads); the CLI's by default.
        A value that cannot name a workload is the reason to refuse the request instead."""
        for name in ("namespace", "labels"):
            size = len(extensions.get(name, ""))
            if size > MAX_CONTEXT_EXTENSION_CHARS:
                return (
                    f"context_extensions {name} is {size} characters long, over the limit "
                    f"of {MAX_CONTEXT_EXTENSION_CHARS}"
                )
        default = self._store.workload
        try:
            labels = parse_labels(extensions["labels"]) if "labels" in extensions else None
        except ValueError as exc:  # the reason quotes the bad pair: cut to a log line's size
            return f"context_extensions labels: {str(exc)[:_MAX_QUOTED_CHARS]}"
        workload = Workload(
            extensions.get("namespace") or default.namespace,
            default.labels if labels is None else labels,
        )
        return self._store.generation.snapshot_for(workload)

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: Any
    ) -> external_auth_pb2.CheckResponse:
        started = time.perf_counter()
        attrs: RequestAttributes | None = None
        try:
            generation = self._store.generation
            if generation is not self._generation:
                # Drop what was kept for the old generation, so that it can go: its answers,
                # snapshots, authentication outcomes and 401s could never be used again.
                self.memo.clear()
                self._route_snapshots.clear()
                self._cache.forget_providers()
                self._rejections.clear()
                self._rejected.clear()
                self._responses.clear()
                self._generation = generation
                self._default_snapshot = self._store.current
            attributes = request.attributes
            extensions = attributes.context_extensions
            if extensions and ("namespace" in extensions or "labels" in extensions):
                route = (extensions.get("namespace"), extensions.get("labels"))
                found = self._route_snapshots.get(route)
                if found is None:
                    chosen = self._snapshot_for(extensions)
                    if isinstance(chosen, str):
                        return self._refuse(chosen, attributes, started)
                    found = chosen
                    self._route_snapshots.put(route, chosen, sum(len(v or "") for v in route))
                snapshot = found
            else:
                snapshot = self._default_snapshot
            now = int(time.time())
            inputs = snapshot.inputs
            # One pass over a raw header map serves the key and, on a miss, the attributes.
            raw = raw_header_map(attributes.request.http, inputs.headers)
            key = decision_key(attributes, inputs, id(snapshot), raw)
            answer = self.memo.get(key, snapshot, now, self._keys.keys) if key else None
            if answer is None:
                attrs = to_attributes(
                    request, self._xff_hops, self._peer_names, inputs.headers, raw
                )
                answer = self._answer(self._decision(attrs, snapshot, now))
                uri = answer.decision.authn.jwks_uri
                if uri and self._refetch is not None and await self._refetch(uri):
                    # The token's key was unknown (rotation) or never fetched: the edge
                    # fetched the key set once (single-flight, rate-limited); decide again.
                    answer = self._answer(self._decision(attrs, snapshot, int(time.time())))
                if key is not None:
                    self.memo.put(key, snapshot, answer.decision, answer)
        except Exception as exc:  # the one broad except: any failure is a logged, counted deny
            log.exception("Check failed; denying")
            self._metrics.check_errors.inc()
            self._counts.count(INTERNAL_ERROR)
            try:
                return build_response(internal_error(type(exc).__name__))
            except Exception:
                return _LAST_RESORT
        elapsed = time.perf_counter() - started
        self._counts.record(answer.labels, elapsed)
        if answer.policy_matches:
            self._counts.count_policies(answer.policy_matches)
        if self._decision_log.wants(answer.decision):
            fields = request_fields(attrs) if attrs is not None else log_fields(attributes)
            self._decision_log.write(fields, answer.decision, elapsed)
        return answer.response

    def _refuse(
        self, reason: str, attributes: Any, started: float
    ) -> external_auth_pb2.CheckResponse:
        """A request that names no usable workload: a counted, logged 403 (never remembered)."""
        decision = refused(reason)
        elapsed = time.perf_counter() - started
        self._counts.record(REFUSED, elapsed)
        if self._decision_log.wants(decision):
            self._decision_log.write(log_fields(attributes), decision, elapsed)
        return self._responses.get(decision)

    def _decision(self, attrs: RequestAttributes, snapshot: Snapshot, now: int) -> Decision:
        return decide(attrs, snapshot, self._keys.keys, now, self._cache, self._rejections)

    def _answer(self, decision: Decision) -> _Answer:
        """The decision with its response and metric labels. A 401 decision made before
        (decide() gives the same object for the same rejection) gets the answer built then."""
        if decision.verdict is Verdict.UNAUTHENTICATED:
            kept = self._rejected.get(id(decision))
            if kept is not None and kept.decision is decision:
                return kept
        answer = _Answer(
            decision,
            self._responses.get(decision),
            check_labels(decision),
            policy_matches(decision.authz),
        )
        if decision.verdict is Verdict.UNAUTHENTICATED:
            # Keyed by identity: the entry holds the decision, so its id is not reused. Kept
            # under the bound decide() keeps its decisions under (a longer one is made anew).
            self._rejected.put(id(decision), answer, quoted_chars(decision))
        return answer


@record
class _Answer:
    """A decision with everything recording it needs, worked out once: remembered answers
    (decision_memo.py) cost no conversion at all."""

    decision: Decision
    response: external_auth_pb2.CheckResponse
    labels: tuple[str, str]  # the (decision, reason) labels of extauthz_checks_total
    policy_matches: tuple[tuple[str, str, str], ...]

"""One JSON line per decision: enough to answer "why did this request get a 403?".

Never the token or its signature: only issuer, subject and kid of the token presented, and
claims only when named in an allow-list.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from logging.handlers import QueueHandler, QueueListener
from queue import Full, Queue

from extauthz.attributes import RequestAttributes
from extauthz.decision import Decision

decision_log = logging.getLogger("extauthz.decision")
MODES = ("all", "denials", "none")


class BackgroundWriter:
    """Decision lines go through a queue to a writer thread, so a slow stderr (a full pipe,
    a busy log collector) never blocks the event loop that answers Check. `stop()` flushes
    what is queued and puts the logger back as it was."""

    def __init__(self) -> None:
        handlers = logging.getLogger().handlers or [logging.StreamHandler(sys.stderr)]
        queue: Queue[logging.LogRecord] = Queue(maxsize=100_000)
        self._listener = QueueListener(queue, *handlers, respect_handler_level=True)
        self._handler = _DroppingQueueHandler(queue)
        self._propagate = decision_log.propagate
        decision_log.addHandler(self._handler)
        decision_log.propagate = False
        self._listener.start()

    def stop(self) -> None:
        decision_log.removeHandler(self._handler)
        decision_log.propagate = self._propagate
        self._listener.stop()


class _DroppingQueueHandler(QueueHandler):
    """Never wait: when the writer cannot keep up, drop the line (and count it)."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except Full:
            _DroppingQueueHandler.dropped += 1


@dataclass(frozen=True, slots=True)
class DecisionLogger:
    mode: str = "all"  # all | denials | none
    allow_sample: float = 1.0  # with mode "all": the fraction of allowed requests logged
    claims: Sequence[str] = ()  # claims copied into the line (allow-list)

    def wants(self, decision: Decision) -> bool:
        if self.mode == "none" or not decision_log.isEnabledFor(logging.INFO):
            return False
        if not decision.is_allowed:
            return True
        if self.mode == "denials":
            return False
        return self.allow_sample >= 1.0 or random.random() < self.allow_sample

    def log(self, attrs: RequestAttributes, decision: Decision, latency_seconds: float) -> None:
        if self.wants(decision):
            self.write(attrs, decision, latency_seconds)

    def write(self, attrs: RequestAttributes, decision: Decision, latency_seconds: float) -> None:
        """Write the line, wanted or not (callers ask `wants` first, once: it samples)."""
        decision_log.info("%s", json.dumps(self.record(attrs, decision, latency_seconds),
                                           separators=(",", ":"), default=str))  # fmt: skip

    def record(
        self, attrs: RequestAttributes, decision: Decision, latency_seconds: float
    ) -> dict[str, object]:
        authn, authz = decision.authn, decision.authz
        record: dict[str, object] = {
            "time": round(time.time(), 3),
            "request_id": attrs.request_id,
            "method": attrs.method,
            "host": attrs.host,
            "path": attrs.path,
            "source_ip": attrs.source_ip,
            "decision": decision.verdict.value,
            "status": decision.http_status,
            "reason": decision.reason,
            "jwt_status": authn.status.name,
            "policy": authz.policy if authz else "",
            "rule": authz.rule if authz else None,
            "detail": authz.detail if authz else "",
            "issuer": authn.issuer,
            "subject": authn.subject,
            "kid": authn.kid,
            "generation": decision.generation,
            "latency_us": round(latency_seconds * 1e6),
        }
        if authz and authz.audits:
            record["audit"] = [str(match) for match in authz.audits]
        if authz and authz.dry_run:
            record["dry_run"] = [str(match) for match in authz.dry_run]
        if self.claims and authn.claims:
            record["claims"] = {k: authn.claims[k] for k in self.claims if k in authn.claims}
        return record

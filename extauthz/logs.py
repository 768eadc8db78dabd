"""One JSON line per decision: enough to answer "why did this request get a 403?".

Never the token or its signature: only issuer, subject and kid of the token presented, and
claims only when named in an allow-list.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from extauthz.attributes import RequestAttributes
from extauthz.decision import Decision

decision_log = logging.getLogger("extauthz.decision")
MODES = ("all", "denials", "none")


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

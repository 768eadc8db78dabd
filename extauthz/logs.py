"""One JSON line per decision: enough to answer "why did this request get a 403?".

Never the token: only issuer, subject and kid of the token that was presented.
"""

from __future__ import annotations

import json
import logging
import time

from extauthz.attributes import RequestAttributes
from extauthz.decision import Decision

decision_log = logging.getLogger("extauthz.decision")


def log_decision(attrs: RequestAttributes, decision: Decision, latency_seconds: float) -> None:
    if not decision_log.isEnabledFor(logging.INFO):
        return
    authn = decision.authn
    authz = decision.authz
    record = {
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
    decision_log.info("%s", json.dumps(record, separators=(",", ":")))

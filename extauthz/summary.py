"""What a decision says, taken from it once, in the words every report of it uses: Envoy's
dynamic metadata (envoy_api.py), the decision log line (logs.py) and `extauthz check`.

Each report picks its keys and order from this (those are pinned by tests and read by
people's log queries); none reads the Decision's authn or authz itself, so they cannot
disagree on what a decision said.
"""

from __future__ import annotations

from typing import NamedTuple

from extauthz.authn.status import JwtStatus
from extauthz.decision import Decision, Verdict


# A NamedTuple, not a frozen dataclass: one is made for every response built (envoy_api's
# ResponseFacts holds it as part of a cache key), and a tuple is made and hashed in C, where
# a frozen dataclass's __init__ sets each of these fields through object.__setattr__.
class DecisionSummary(NamedTuple):
    verdict: Verdict
    status: int  # the HTTP status
    reason: str
    jwt_status: JwtStatus
    principal: str  # the request principal "<iss>/<sub>" of a verified token, else ""
    # Of the token presented, verified or not (so a client's text, of any length).
    issuer: str
    subject: str
    kid: str
    policy: str  # namespace/name of the policy that decided; "" when none did
    rule: int | None  # its rule's index
    detail: str  # for denials: the clauses that decided
    audits: tuple[str, ...]  # "AUDIT ns/name rules[i]" of each AUDIT policy that matched
    dry_run: tuple[str, ...]  # what each dry-run policy would have done, the same way
    generation: int  # the configuration generation that decided


def summarize(decision: Decision) -> DecisionSummary:
    authn, authz = decision.authn, decision.authz
    audits: tuple[str, ...] = ()
    dry_run: tuple[str, ...] = ()
    if authz is None:  # unauthenticated, refused, or an internal error: no policy ran
        policy, rule, detail = "", None, ""
    else:
        policy, rule, detail = authz.policy, authz.rule, authz.detail
        if authz.audits:
            audits = tuple(map(str, authz.audits))
        if authz.dry_run:
            dry_run = tuple(map(str, authz.dry_run))
    return DecisionSummary(
        decision.verdict, decision.http_status, decision.reason, authn.status, authn.principal,
        authn.issuer, authn.subject, authn.kid, policy, rule, detail, audits, dry_run,
        decision.generation_number,
    )  # fmt: skip

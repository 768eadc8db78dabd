"""What a compiled rule reads of a request, declared by the rule field that reads it.

Remembered answers (decision_memo.py) are found by exactly the request values the workload's
rules declare here (snapshot/inputs.py turns these into the raw CheckRequest values of the
key), so a declaration that missed a value would serve one request's answer to another.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class RequestValue(enum.Enum):
    """A value a rule can test: a field of RequestAttributes (its name is the value), or what
    authentication made of the request's token. Headers are named in Reads.headers."""

    METHOD = "method"
    HOST = "host"
    PATH = "path"
    QUERY = "query"
    SCHEME = "scheme"
    SOURCE_IP = "source_ip"
    SOURCE_PORT = "source_port"
    REMOTE_IP = "remote_ip"
    DESTINATION_IP = "destination_ip"
    DESTINATION_PORT = "destination_port"
    SOURCE_PRINCIPAL = "source_principal"
    SNI = "sni"
    REQUEST_ID = "request_id"
    CONTEXT_EXTENSIONS = "context_extensions"
    AUTHN = "authn"  # the verified token's principal and claims


@dataclass(frozen=True, slots=True)
class Reads:
    values: frozenset[RequestValue] = frozenset()
    headers: tuple[str, ...] = ()  # lower-case names, first-seen order

    @staticmethod
    def of(*values: RequestValue, headers: tuple[str, ...] = ()) -> Reads:
        return Reads(frozenset(values), headers)

    @staticmethod
    def union(reads: Iterable[Reads]) -> Reads:
        values: set[RequestValue] = set()
        headers: dict[str, None] = {}
        for one in reads:
            values.update(one.values)
            headers.update(dict.fromkeys(one.headers))
        return Reads(frozenset(values), tuple(headers))

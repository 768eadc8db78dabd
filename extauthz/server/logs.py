"""One JSON line per decision: enough to answer "why did this request get a 403?".

Never the token or its signature: only issuer, subject and kid of the token presented, and
claims only when named in an allow-list.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from queue import SimpleQueue
from typing import Self, TextIO, TypeGuard, cast

from extauthz.attributes import RequestAttributes
from extauthz.bounded import BoundedCache
from extauthz.decision import Decision, Verdict
from extauthz.summary import DecisionSummary, summarize

decision_log = logging.getLogger("extauthz.decision")
MODES = ("all", "denials", "none")


# What a line says about the request: request id, method, host, path (never the query: it
# may hold a token) and source ip.
RequestFields = tuple[str, str, str, str, str]
# (wall-clock time, request, decision, seconds spent, the logger that wants it)
_Item = tuple[float, RequestFields, Decision, float, "DecisionLogger"]
_MAX_QUEUED = 100_000


def request_fields(attrs: RequestAttributes) -> RequestFields:
    return attrs.request_id, attrs.method, attrs.host, attrs.path, attrs.source_ip


class BackgroundWriter:
    """While it runs, decisions are handed to a writer thread as they are (a queue put, well
    under a microsecond on the loop's thread). Every 50 ms that thread takes what is queued,
    builds the JSON lines and writes them through the `extauthz.decision` logger's handlers,
    a plain stream getting the whole batch in one write. So neither formatting nor a slow
    stderr (a full pipe, a busy log collector) holds up the event loop that answers Check,
    and the two threads meet 20 times a second, not once per line. Past 100,000 queued
    lines new ones are dropped and counted. `stop()` writes what is queued."""

    dropped = 0

    def __init__(self, interval_seconds: float = 0.05) -> None:
        self._queue: SimpleQueue[_Item] = SimpleQueue()
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def put(self, item: _Item) -> None:
        if self._queue.qsize() >= _MAX_QUEUED:
            BackgroundWriter.dropped += 1
            return
        self._queue.put(item)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        batch = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            _emit(batch)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)


class LineHandler(logging.StreamHandler[TextIO]):
    """Decision lines as they are, one JSON object per line (what `serve` installs on the
    `extauthz.decision` logger): `jq` reads them, and the writer thread hands a batch to
    the stream without building a LogRecord or formatting a time per line (together about
    four fifths of a line's cost)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter("%(message)s"))


def install_line_handler(stream: TextIO) -> None:
    """Decision lines go to `stream` as bare JSON lines, unless someone configured the
    logger's handlers already (then theirs stay, with their formats)."""
    if not decision_log.handlers:
        decision_log.addHandler(LineHandler(stream))
        decision_log.propagate = False


_PLAIN_STREAMS = (logging.StreamHandler, logging.FileHandler)  # exactly these: write batches


def _emit(items: list[_Item]) -> None:
    """What Logger.handle does for each line, with one write per plain stream handler."""
    if decision_log.disabled:
        return
    handlers = _handlers()
    bare = [handler for handler in handlers if _bare(handler)]
    if bare and len(bare) == len(handlers) and not decision_log.filters:
        text = "".join(
            logger.line(when, fields, decision, seconds) + "\n"
            for when, fields, decision, seconds, logger in items
        )
        for line_handler in bare:
            with line_handler.lock or nullcontext():
                line_handler.stream.write(text)
                line_handler.flush()
        return
    records = []
    for when, fields, decision, latency_seconds, logger in items:
        line = logger.line(when, fields, decision, latency_seconds)
        # makeRecord, not info(): no caller lookup (a stack walk) for a line known to be ours.
        record = decision_log.makeRecord(
            decision_log.name, logging.INFO, __file__, 0, line, (), None
        )
        if decision_log.filter(record):
            records.append(record)
    if not records:
        return
    for handler in _handlers():  # (Python's lastResort handler prints WARNING and up only)
        if handler.level > logging.INFO:
            continue
        if type(handler) in _PLAIN_STREAMS and not handler.filters:
            stream = cast(logging.StreamHandler[TextIO], handler)
            text = "".join(stream.format(r) + stream.terminator for r in records)
            with stream.lock or nullcontext():
                stream.stream.write(text)
                stream.flush()
        else:
            for record in records:
                handler.handle(record)


def _bare(handler: logging.Handler) -> TypeGuard[LineHandler]:
    return type(handler) is LineHandler and not handler.filters and handler.level <= logging.INFO


def _handlers() -> list[logging.Handler]:
    """The handlers a decision line reaches, as Logger.callHandlers walks them."""
    found: list[logging.Handler] = []
    logger: logging.Logger | None = decision_log
    while logger is not None:
        found.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    return found


@dataclass(frozen=True, slots=True)
class DecisionLogSettings:
    mode: str = "denials"  # all | denials | none (serve's default: denials)
    allow_sample: float = 1.0  # with mode "all": the fraction of allowed requests logged
    claims: Sequence[str] = ()  # claims copied into the line (allow-list)


class DecisionLogger:
    """Writes decision lines: through a BackgroundWriter's thread when given one (what
    `serve` does), else at once. Owns the encoded decision parts it reuses; used by one
    thread at a time (the writer's, or the caller's)."""

    def __init__(
        self,
        mode: str = "all",
        allow_sample: float = 1.0,
        claims: Sequence[str] = (),
        writer: BackgroundWriter | None = None,
    ) -> None:
        self.mode = mode
        self.allow_sample = allow_sample
        self.claims = tuple(claims)
        self.writer = writer
        # Encoded decision parts by decision identity (see `line`); each entry holds its
        # decision, so an id is never reused while remembered.
        self._fragments: BoundedCache[int, tuple[Decision, str]] = BoundedCache(
            _MAX_FRAGMENTS, max_entry_cost=_MAX_FRAGMENT_CHARS
        )
        self._by_summary: BoundedCache[DecisionSummary, str] = BoundedCache(
            _MAX_FRAGMENTS, max_entry_cost=2 * _MAX_QUOTED_KEY_CHARS
        )

    @classmethod
    def of(cls, settings: DecisionLogSettings, writer: BackgroundWriter | None = None) -> Self:
        return cls(settings.mode, settings.allow_sample, settings.claims, writer)

    def wants(self, decision: Decision) -> bool:
        # An allow in the default mode (denials) is the most common case: decided first.
        if decision.verdict is Verdict.ALLOW:
            if self.mode != "all" or not decision_log.isEnabledFor(logging.INFO):
                return False
            return self.allow_sample >= 1.0 or random.random() < self.allow_sample
        return self.mode != "none" and decision_log.isEnabledFor(logging.INFO)

    def log(self, attrs: RequestAttributes, decision: Decision, latency_seconds: float) -> None:
        if self.wants(decision):
            self.write(request_fields(attrs), decision, latency_seconds)

    def write(self, fields: RequestFields, decision: Decision, latency_seconds: float) -> None:
        """Write the line, wanted or not (callers ask `wants` first, once: it samples): by the
        BackgroundWriter's thread when one runs, else right here."""
        item = (time.time(), fields, decision, latency_seconds, self)
        if self.writer is not None:
            self.writer.put(item)
        else:
            _emit([item])

    def record(
        self, when: float, fields: RequestFields, decision: Decision, latency_seconds: float
    ) -> dict[str, object]:
        """The line as a dict (what `line` writes)."""
        request_id, method, host, path, source_ip = fields
        return {
            "time": round(when, 3), "request_id": request_id, "method": method, "host": host,
            "path": path, "source_ip": source_ip, **self._decision_part(decision),
            "latency_us": round(latency_seconds * 1e6),
        }  # fmt: skip

    def line(
        self, when: float, fields: RequestFields, decision: Decision, latency_seconds: float
    ) -> str:
        """The JSON line. What depends on the decision alone is encoded once per decision
        object (remembered answers bring back the same one), the request's part each time."""
        request_id, method, host, path, source_ip = map(_string, fields)
        return (
            f'{{"time":{when:.3f},"request_id":{request_id},"method":{method},"host":{host},'
            f'"path":{path},"source_ip":{source_ip},{self._fragment(decision)},'
            f'"latency_us":{round(latency_seconds * 1e6)}}}'
        )

    def _fragment(self, decision: Decision) -> str:
        """The decision's part of the line, encoded once per remembered decision, and once per
        summary for decisions made anew each time (a flood of new junk tokens is one 401)."""
        found = self._fragments.get(id(decision))
        if found is not None and found[0] is decision:
            return found[1]
        if decision.authn.validity is not None:  # a remembered answer: it comes back
            text = _dumps(self._decision_part(decision))[1:-1]
            self._fragments.put(id(decision), (decision, text), cost=len(text))
            return text
        # 401s and refusals are new objects every time, and may quote what the client sent:
        # kept by their summary only when what they quote is short, so that no client can
        # fill memory with its text (at most _MAX_FRAGMENTS x 2 x _MAX_QUOTED_KEY_CHARS).
        summary = summarize(decision)
        quoted = sum(map(len, (summary.reason, summary.detail, summary.issuer,
                               summary.subject, summary.kid, summary.principal)))  # fmt: skip
        if quoted > _MAX_QUOTED_KEY_CHARS or (self.claims and decision.authn.claims):
            return _dumps(self._decision_part(decision))[1:-1]
        kept = self._by_summary.get(summary)
        if kept is None:
            kept = _dumps(self._decision_part(decision))[1:-1]
            self._by_summary.put(summary, kept, cost=len(kept) + quoted)
        return kept

    def _decision_part(self, decision: Decision) -> dict[str, object]:
        summary = summarize(decision)
        part: dict[str, object] = {
            "decision": summary.verdict.value,
            "status": summary.status,
            "reason": summary.reason,
            "jwt_status": summary.jwt_status.name,
            "policy": summary.policy,
            "rule": summary.rule,
            "detail": summary.detail,
            # Read from tokens that may not have verified: a client's text, cut to size.
            "issuer": summary.issuer[:_MAX_TOKEN_FIELD_CHARS],
            "subject": summary.subject[:_MAX_TOKEN_FIELD_CHARS],
            "kid": summary.kid[:_MAX_TOKEN_FIELD_CHARS],
            "generation": summary.generation,
        }
        if summary.audits:
            part["audit"] = list(summary.audits)
        if summary.dry_run:
            part["dry_run"] = list(summary.dry_run)
        claims = decision.authn.claims
        if self.claims and claims:
            part["claims"] = {k: claims[k] for k in self.claims if k in claims}
        return part


_MAX_FRAGMENTS = 4096
_MAX_FRAGMENT_CHARS = 4096  # so the fragments kept hold at most 16 MiB
_MAX_TOKEN_FIELD_CHARS = 256
_MAX_QUOTED_KEY_CHARS = 1024  # client text in a summary kept as a key
_string: Callable[[str], str] = encode_basestring_ascii  # a JSON string, as json.dumps writes it


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)

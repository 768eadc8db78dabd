from __future__ import annotations

import base64
import io
import json
import logging
import time
from types import MappingProxyType

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import TokenCache
from extauthz.decision import decide, refused
from extauthz.rig.rig import SAMPLES
from extauthz.server.logs import BackgroundWriter, DecisionLogger
from tests.support.config import snapshot_from

SNAPSHOT = snapshot_from(
    (SAMPLES / "gateway-policies.yaml").read_text(),
    namespace="istio-system",
    labels="app=istio-ingressgateway",
)
TOKEN = (SAMPLES / "demo.jwt").read_text().strip()


def _decision(path: str, token: str = "") -> tuple[RequestAttributes, object]:
    headers = (
        {"authorization": f"Bearer {token}", "x-request-id": "req-1"}
        if token
        else {"x-request-id": "req-1"}
    )
    attrs = RequestAttributes(
        path=path, headers=MappingProxyType(headers), request_id="req-1", source_ip="10.1.2.3"
    )
    # With a token cache, as `serve` decides: an accepted outcome then carries its validity.
    return attrs, decide(attrs, SNAPSHOT, lambda uri, now: None, int(time.time()), TokenCache())


@pytest.mark.parametrize(
    ("logger", "path", "logged"),
    [
        pytest.param(DecisionLogger("all"), "/productpage", True, id="all-logs-allow"),
        pytest.param(DecisionLogger("denials"), "/productpage", False, id="denials-skips-allow"),
        pytest.param(DecisionLogger("denials"), "/api/v1/products/0", True, id="denials-logs-deny"),
        pytest.param(DecisionLogger("none"), "/api/v1/products/0", False, id="none"),
        pytest.param(
            DecisionLogger("all", allow_sample=0.0), "/productpage", False, id="sampled-out-allow"
        ),
        pytest.param(
            DecisionLogger("all", allow_sample=0.0),
            "/api/v1/products/0",
            True,
            id="denials-never-sampled-out",
        ),
    ],
)
def test_modes(
    caplog: pytest.LogCaptureFixture, logger: DecisionLogger, path: str, logged: bool
) -> None:
    attrs, decision = _decision(path)
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        logger.log(attrs, decision, 0.000123)  # type: ignore[arg-type]
    assert bool(caplog.records) is logged


def test_line_content_never_holds_the_token(caplog: pytest.LogCaptureFixture) -> None:
    attrs, decision = _decision("/api/v1/products/0", TOKEN)
    bad_attrs, bad_decision = _decision("/api/v1/products/0", TOKEN[:-6] + "AAAAAA")
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        DecisionLogger("all", claims=("foo", "absent")).log(attrs, decision, 0.000123)  # type: ignore[arg-type]
        DecisionLogger("all").log(bad_attrs, bad_decision, 0.0)  # type: ignore[arg-type]
    good, bad = (json.loads(r.getMessage()) for r in caplog.records)
    assert (
        good["decision"] == "allow"
        and good["request_id"] == "req-1"
        and good["source_ip"] == "10.1.2.3"
    )
    assert good["issuer"] == good["subject"] == "testing@secure.istio.io"
    assert good["claims"] == {"foo": "bar"}
    assert good["latency_us"] == 123
    assert (bad["decision"], bad["status"], bad["jwt_status"]) == (
        "unauthenticated",
        401,
        "JwtVerificationFail",
    )
    for record in caplog.records:
        text = record.getMessage()
        for secret in (TOKEN, TOKEN.split(".")[2], TOKEN.split(".")[2][:20]):
            assert secret not in text


def test_denial_line_names_policy_rule_and_clauses(caplog: pytest.LogCaptureFixture) -> None:
    attrs, decision = _decision("/api/v1/products/0")
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        DecisionLogger().log(attrs, decision, 0.0)  # type: ignore[arg-type]
    line = json.loads(caplog.records[0].getMessage())
    assert (line["status"], line["policy"], line["rule"]) == (403, "istio-system/test-exclude", 0)
    assert "notRequestPrincipals" in line["detail"]


def test_line_is_the_record_as_json_also_for_odd_paths() -> None:
    """`line` encodes the decision's part once and the request's part each time; the result
    must be the record, whatever characters the request brings."""
    logger = DecisionLogger("all", claims=("foo",))
    _, decision = _decision("/x", TOKEN)
    for path in ('/a"b\\c', "/caf\u00e9/\u2603", "/tab\there", "/"):
        fields = ("id-\u00e9", "GET", "h\u00f6st", path, "::1")
        line = logger.line(1_700_000_000.25, fields, decision, 0.0000425)  # type: ignore[arg-type]
        assert line.isascii() and "\n" not in line
        assert json.loads(line) == logger.record(1_700_000_000.25, fields, decision, 0.0000425)  # type: ignore[arg-type]
    assert len(logger._fragments) == 1  # one decision, encoded once


def test_fragments_are_kept_only_for_decisions_that_come_back() -> None:
    """A 401 or a refusal is a new decision each time and quotes the client's text (a kid
    of 100 KB): its fragment is not kept, and the token fields in the line are cut."""
    logger = DecisionLogger("all")
    header = json.dumps({"alg": "RS256", "kid": "k" * 40_000}).encode()
    forged = base64.urlsafe_b64encode(header).rstrip(b"=").decode() + "." + TOKEN.split(".", 1)[1]
    _, unauthenticated = _decision("/x", forged)
    assert len(unauthenticated.authn.kid) == 40_000  # type: ignore[attr-defined]
    refusal = refused("context_extensions labels: " + "y" * 100_000)
    fields = ("id", "GET", "h", "/x", "::1")
    for decision in (unauthenticated, refusal):
        line = logger.line(1.0, fields, decision, 0.0)  # type: ignore[arg-type]
        assert len(json.loads(line)["kid"]) <= 256
    assert len(logger._fragments) == 0
    _, kept = _decision("/x", TOKEN)
    logger.line(1.0, fields, kept, 0.0)  # type: ignore[arg-type]
    assert len(logger._fragments) == 1


def _write_through_background_writer(
    handler: logging.Handler, count: int, interval_seconds: float = 0.05
) -> None:
    """`count` allowed decisions (request ids req-0...) written while a BackgroundWriter runs,
    with `handler` as the decision logger's only handler; everything is put back after."""
    decision_log = logging.getLogger("extauthz.decision")
    level, propagate = decision_log.level, decision_log.propagate
    decision_log.addHandler(handler)
    decision_log.setLevel(logging.INFO)
    decision_log.propagate = False
    _, decision = _decision("/api/v1/products/0")
    writer = BackgroundWriter(interval_seconds)
    try:
        for number in range(count):
            fields = (f"req-{number}", "GET", "h", "/api/v1/products/0", "10.0.0.1")
            DecisionLogger("all", writer=writer).write(fields, decision, 0.0)  # type: ignore[arg-type]
    finally:
        writer.stop()
        decision_log.removeHandler(handler)
        decision_log.setLevel(level)
        decision_log.propagate = propagate


def test_background_writer_writes_every_line_in_order_and_flushes_on_stop() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    _write_through_background_writer(Collect(), 500)
    assert [json.loads(line)["request_id"] for line in lines] == [f"req-{n}" for n in range(500)]


class CountingStream(io.StringIO):
    """A stream that counts the writes it gets (a batch is one write)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_background_writer_gives_a_plain_stream_whole_batches() -> None:
    """A StreamHandler (what `serve` logs to) gets many lines per write, formatted by its
    own formatter, instead of one write and one flush per line."""
    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    _write_through_background_writer(handler, 300, interval_seconds=0.2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 300
    assert all(line.startswith("INFO extauthz.decision: {") for line in lines)
    assert [json.loads(line.split(": ", 1)[1])["request_id"] for line in lines] == [
        f"req-{n}" for n in range(300)
    ]
    assert stream.writes < 30


def test_line_handler_gets_bare_json_lines_in_whole_batches() -> None:
    """What `serve` installs: each line is the JSON object alone (no time, level or logger
    name in front), written in batches straight from the writer thread."""
    from extauthz.server.logs import LineHandler

    stream = CountingStream()
    _write_through_background_writer(LineHandler(stream), 300, interval_seconds=0.2)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"req-{n}" for n in range(300)]
    assert all(line.startswith('{"time":') and line.endswith("}") for line in lines)
    assert stream.writes < 30


def test_a_filter_or_another_handler_gets_records_as_before() -> None:
    """The fast path is taken only when every handler is a bare LineHandler: a filter on the
    handler still sees (and can drop) each record."""
    from extauthz.server.logs import LineHandler

    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.addFilter(lambda record: "req-1" not in record.getMessage())
    _write_through_background_writer(handler, 3)
    ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
    assert ids == ["req-0", "req-2"]


def test_a_flood_of_new_401s_is_encoded_once_per_summary() -> None:
    """Junk tokens make a new 401 decision each time; equal summaries share one encoded
    part, and each line still says what its own decision said."""
    logger = DecisionLogger("all")
    fields = ("id", "GET", "h", "/x", "::1")
    lines = []
    for number in range(50):
        _, decision = _decision("/x", f"j{number:03d}.junk.junk")
        lines.append(json.loads(logger.line(1.0, fields, decision, 0.0)))  # type: ignore[arg-type]
    assert len(logger._by_summary) == 1 and len(logger._fragments) == 0
    assert {(line["status"], line["jwt_status"]) for line in lines} == {
        (401, "JwtHeaderParseErrorBadJson")
    }
    _, other = _decision("/x", "only-one-part")
    assert json.loads(logger.line(1.0, fields, other, 0.0))["jwt_status"] == "JwtBadFormat"  # type: ignore[arg-type]
    assert len(logger._by_summary) == 2

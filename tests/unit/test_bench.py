"""The benchmark's parsers, body framing and Envoy configs (bench/). No timing is asserted:
the samples below are output captured from real wrk 4.1.0 and h2load 1.52.0 runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jwt as pyjwt
import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2

from bench import check_body, configs, loadgen, plot, report, tokens, upstream
from extauthz.authn.keys import parse_jwks
from extauthz.config.parse import parse_documents

# b-native, no token: every answer is RBAC's 403.
WRK_DENIED = """\
Running 1s test @ http://127.0.0.1:54349/api/v1/products/0
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   760.88us  130.13us   2.25ms   72.02%
    Req/Sec    64.48k     1.94k   66.57k    81.82%
  Latency Distribution
     50%  777.00us
     75%  832.00us
     90%    0.88ms
     99%    1.10ms
  70479 requests in 1.10s, 9.61MB read
  Non-2xx or 3xx responses: 70479
Requests/sec:  64063.20
Transfer/sec:      8.74MB
"""

# Envoy -> productpage: all 200.
WRK_OK = """\
Running 5s test @ http://127.0.0.1:34043/api/v1/products/0
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.66ms    0.94ms   9.70ms   81.21%
    Req/Sec    18.92k     4.72k   26.23k    60.00%
  Latency Distribution
     50%    2.30ms
     75%    2.94ms
     90%    4.11ms
     99%    5.94ms
  94161 requests in 5.00s, 40.95MB read
Requests/sec:  18820.97
Transfer/sec:      8.18MB
"""

# A server that answers 503 and closes every connection.
WRK_SOCKET_ERRORS = """\
Running 2s test @ http://127.0.0.1:18999/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   127.91us  297.56us   5.31ms   97.70%
    Req/Sec    45.63k     2.54k   50.49k    66.67%
  Latency Distribution
     50%   90.00us
     75%  107.00us
     90%  125.00us
     99%    1.75ms
  95239 requests in 2.10s, 5.00MB read
  Socket errors: connect 0, read 95239, write 0, timeout 0
  Non-2xx or 3xx responses: 95239
Requests/sec:  45351.82
Transfer/sec:      2.38MB
"""

# Check straight to bench/always_ok.py.
H2LOAD_OK = """\
starting benchmark...
spawning thread #0: 4 total client(s). 3000 total requests
Application protocol: h2c
progress: 10% done
progress: 100% done

finished in 420.32ms, 7137.35 req/s, 448.57KB/s
requests: 3000 total, 3000 started, 3000 done, 3000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 3000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 188.54KB (193070) total, 9.08KB (9300) headers (space savings 96.17%), 26.37KB (27000) data
                     min         max         mean         sd        +/- sd
time for request:     5.89ms     47.60ms     27.52ms      6.15ms    84.67%
time for connect:       76us       271us       162us        82us    50.00%
time to 1st byte:     6.14ms     25.90ms     12.56ms      9.25ms    75.00%
req/s           :    1794.42     1829.68     1803.31       17.58    75.00%
"""

# Nothing listening.
H2LOAD_REFUSED = """\
starting benchmark...
spawning thread #0: 1 total client(s). 10 total requests

finished in 410us, 0.00 req/s, 0B/s
requests: 10 total, 0 started, 0 done, 0 succeeded, 10 failed, 10 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :       0.00        0.00        0.00        0.00   100.00%
"""

H2LOAD_LOG = "".join(f"1795927465378816\t200\t{us}\n" for us in range(1, 101))


# -- wrk ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "requests", "rate", "p50", "p99", "non_2xx", "errors"),
    [
        (WRK_DENIED, 70479, 64063.20, 777e-6, 1.10e-3, 70479, {}),
        (WRK_OK, 94161, 18820.97, 2.30e-3, 5.94e-3, 0, {}),
        (WRK_SOCKET_ERRORS, 95239, 45351.82, 90e-6, 1.75e-3, 95239,
         {"connect": 0, "read": 95239, "write": 0, "timeout": 0}),
    ],
    ids=["all-403", "all-200", "socket-errors"],
)  # fmt: skip
def test_parse_wrk(
    text: str,
    requests: int,
    rate: float,
    p50: float,
    p99: float,
    non_2xx: int,
    errors: dict[str, int],
) -> None:
    result = loadgen.parse_wrk(text)
    assert result.requests == requests
    assert result.requests_per_s == pytest.approx(rate)
    assert result.p50_s == pytest.approx(p50)
    assert result.p99_s == pytest.approx(p99)
    assert set(result.percentiles_s) == {50, 75, 90, 99}
    assert result.non_2xx_3xx == non_2xx
    assert result.socket_errors == errors


def test_parse_wrk_units() -> None:
    result = loadgen.parse_wrk(WRK_OK)
    assert result.duration_s == pytest.approx(5.0)
    assert result.latency_mean_s == pytest.approx(2.66e-3)
    assert result.percentiles_s[90] == pytest.approx(4.11e-3)


@pytest.mark.parametrize(
    "text",
    ["", "unable to connect to 127.0.0.1:1 Connection refused", WRK_OK.replace("Latency Distribution", "").replace("50%", "")],
    ids=["empty", "refused", "without-latency-flag"],
)  # fmt: skip
def test_parse_wrk_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        loadgen.parse_wrk(text)


def test_wrk_command_uses_the_token_script(tmp_path: Path) -> None:
    pool = tmp_path / "pool.txt"
    argv = loadgen.wrk_command("http://h/p", 10, token_file=pool)
    assert argv[:5] == ["wrk", "-t1", "-c50", "-d10s", "--latency"]
    assert argv[argv.index("-s") + 1] == str(loadgen.WRK_LUA)
    assert argv[-3:] == ["http://h/p", "--", str(pool)]
    assert loadgen.WRK_LUA.exists()


def test_wrk_command_sends_a_fixed_header() -> None:
    argv = loadgen.wrk_command("http://h/p", 3, headers={"Authorization": "Bearer t"})
    assert argv[argv.index("-H") + 1] == "Authorization: Bearer t"
    assert "-s" not in argv


# -- h2load -------------------------------------------------------------------------------------
def test_parse_h2load() -> None:
    result = loadgen.parse_h2load(H2LOAD_OK)
    assert result.requests == 3000
    assert result.succeeded == 3000
    assert (result.failed, result.errored) == (0, 0)
    assert result.status_counts == {"2xx": 3000, "3xx": 0, "4xx": 0, "5xx": 0}
    assert result.data_bytes == 27000  # 9 bytes a Check: 5 framing + a 4-byte CheckResponse
    assert result.duration_s == pytest.approx(0.42032)
    assert result.requests_per_s == pytest.approx(7137.35)
    assert result.latency_mean_s == pytest.approx(27.52e-3)


def test_parse_h2load_nothing_answered() -> None:
    result = loadgen.parse_h2load(H2LOAD_REFUSED)
    assert (result.requests, result.succeeded, result.failed, result.errored) == (10, 0, 10, 10)
    assert result.data_bytes == 0
    assert result.requests_per_s == 0


def test_parse_h2load_refuses_other_text() -> None:
    with pytest.raises(ValueError):
        loadgen.parse_h2load(WRK_OK)


def test_parse_h2load_log_percentiles() -> None:
    percentiles = loadgen.parse_h2load_log(H2LOAD_LOG)
    assert percentiles == pytest.approx({50: 50e-6, 90: 90e-6, 99: 99e-6})
    assert loadgen.parse_h2load_log("") == {}


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([1.0], 0.99, 1.0), ([1.0, 2.0], 0.5, 1.0), ([1.0, 2.0], 0.51, 2.0), (list(range(1, 11)), 0.99, 10)],
    ids=["one", "half-of-two", "over-half", "p99-of-ten"],
)  # fmt: skip
def test_percentile_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert loadgen.percentile(values, fraction) == expected


def test_h2load_command_is_grpc(tmp_path: Path) -> None:
    argv = loadgen.h2load_command("http://127.0.0.1:1/x", tmp_path / "body.bin", 5000)
    assert argv[:7] == ["h2load", "-c", "4", "-m", "50", "-n", "5000"]
    headers = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-H"]
    assert headers == ["content-type: application/grpc", "te: trailers"]
    assert argv[argv.index("-d") + 1] == str(tmp_path / "body.bin")


# -- the gRPC body ------------------------------------------------------------------------------
def test_body_decodes_back_to_the_check_request() -> None:
    token = tokens.demo_token()
    request = check_body.check_request(token, "/api/v1/products/0", "127.0.0.1:8080")
    body = check_body.check_body(request)
    assert body[0] == 0  # not compressed
    assert int.from_bytes(body[1:5], "big") == len(body) - 5
    decoded = external_auth_pb2.CheckRequest()
    decoded.ParseFromString(check_body.grpc_unframe(body))
    assert decoded == request
    http = decoded.attributes.request.http
    assert (http.method, http.path, http.host) == ("GET", "/api/v1/products/0", "127.0.0.1:8080")
    assert http.headers["authorization"] == f"Bearer {token}"
    assert http.headers[":path"] == "/api/v1/products/0"
    assert decoded.attributes.destination.address.socket_address.port_value == 8080


def test_body_without_token_has_no_authorization_header() -> None:
    request = check_body.check_request("")
    assert "authorization" not in request.attributes.request.http.headers


@pytest.mark.parametrize(
    "frame",
    [b"\x01\x00\x00\x00\x00", b"\x00\x00\x00\x00\x05abc"],
    ids=["compressed", "short"],
)
def test_unframe_refuses_what_grpc_frame_never_makes(frame: bytes) -> None:
    with pytest.raises(ValueError):
        check_body.grpc_unframe(frame)


def test_extauthz_reads_the_body_as_envoy_sends_it() -> None:
    from extauthz.server.envoy_api import to_attributes

    attrs = to_attributes(check_body.check_request(tokens.demo_token()))
    assert (attrs.method, attrs.path, attrs.source_ip) == ("GET", "/api/v1/products/0", "127.0.0.1")


# -- tokens and policies ------------------------------------------------------------------------
def test_minted_tokens_verify_with_the_combined_jwks(tmp_path: Path) -> None:
    rs256, es256 = tokens.sample_rs256_key(), tokens.new_es256_key()
    jwks = json.loads(tokens.jwks_json([rs256, es256]))
    assert [key["kid"] for key in jwks["keys"]] == [rs256.kid, es256.kid]
    for key in (rs256, es256):
        [token, other] = tokens.mint_pool(key, 2, now=1_700_000_000)
        assert token != other
        header = pyjwt.get_unverified_header(token)
        assert (header["alg"], header["kid"]) == (key.alg, key.kid)
        [jwk] = [k for k in jwks["keys"] if k["kid"] == key.kid]
        public = pyjwt.PyJWK(jwk).key
        claims = pyjwt.decode(token, public, algorithms=[key.alg], options={"verify_exp": False})
        assert claims["iss"] == claims["sub"] == "testing@secure.istio.io"


def test_policies_file_carries_the_combined_jwks(tmp_path: Path) -> None:
    jwks = tokens.jwks_json([tokens.sample_rs256_key(), tokens.new_es256_key()])
    path = tokens.write_gateway_policies(jwks, tmp_path / "policies.yaml")
    parsed = parse_documents(path.read_text(), str(path))  # extauthz accepts it
    assert parsed is not None
    [authn] = [
        d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "RequestAuthentication"
    ]
    assert authn["spec"]["jwtRules"][0]["jwks"] == jwks
    assert len(parse_jwks(jwks).keys) == 2


# -- the upstream's request splitting -----------------------------------------------------------
@pytest.mark.parametrize(
    ("buffer", "complete", "rest"),
    [
        (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", 1, b""),
        (b"GET / HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET", 2, b"GET"),
        (b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nab", 0, b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nab"),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET", 1, b"GET"),
    ],
    ids=["one", "pipelined", "body-incomplete", "body-complete"],
)  # fmt: skip
def test_upstream_splits_requests(buffer: bytes, complete: int, rest: bytes) -> None:
    assert upstream.split_requests(buffer) == (complete, rest)


# -- the table ----------------------------------------------------------------------------------
def _row(config: str, scenario: str, rate: float, p99: float) -> report.Row:
    return report.Row(config, config, "-", scenario, scenario, "wrk", rate, p99 / 2, p99, None,
                      100, "200", "200", 0, 0, 0, True)  # fmt: skip


def test_ratios_divide_extauthz_by_the_others() -> None:
    rows = [_row("d", "rs256-cached", 1000, 0.02), _row("b-native", "rs256-cached", 4000, 0.005),
            _row("c-uvloop", "rs256-cached", 2000, 0.01)]  # fmt: skip
    found = report.ratios(rows, ("rs256-cached", "rs256-fresh"), "d", ("c-uvloop", "b-native"))
    assert [(r.denominator, r.rate, r.p99) for r in found] == [
        ("c-uvloop", 0.5, 2.0),
        ("b-native", 0.25, 4.0),
    ]
    table = report.format_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "MISMATCH" not in table


# -- the builders' configs ----------------------------------------------------------------------
def test_direct_config_has_no_cluster() -> None:
    config = configs.no_auth(1, 2, None)
    assert config["static_resources"]["clusters"] == []
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    route = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["direct_response"]["status"] == 200


def test_authorizer_cost_per_request_and_noise() -> None:
    quiet = dataclasses.replace(
        _row("d", "rs256-cached", 4000, 0.02), cpu_percent={"authorizer": 100.0, "other": 2.0}
    )
    noisy = dataclasses.replace(quiet, cpu_percent={"envoy": 50.0, "other": 40.0})
    assert report.authorizer_us_per_request(quiet) == pytest.approx(250.0)
    assert report.authorizer_us_per_request(noisy) is None
    assert report.noisy_rows([quiet, noisy]) == [noisy]


def test_soak_reads_rss_from_proc() -> None:
    import os

    from bench import soak

    ballast_before = soak.rss_bytes(os.getpid())
    ballast = bytearray(64 * 1024 * 1024)  # touched below, so it is resident
    for offset in range(0, len(ballast), 4096):
        ballast[offset] = 1
    grown = soak.rss_bytes(os.getpid()) - ballast_before
    assert 60 * 1024 * 1024 < grown < 80 * 1024 * 1024
    assert soak.change_percent(100, 110) == pytest.approx(10.0)
    del ballast


@pytest.mark.parametrize("key", ["rs256-fresh", "es256-fresh", "malformed-fresh", "badsig-fresh"])
def test_soak_sends_a_pool_of_new_tokens_for_each_of_its_scenarios(
    key: str, tmp_path: Path
) -> None:
    from bench import scenarios, soak

    assert key in soak.SOAK_SCENARIOS
    chosen = scenarios.prepare(tmp_path, (key,), pool_size=5).scenario(key)
    assert chosen.token_file is not None and chosen.token_file.is_file()
    assert chosen.is_fresh


def test_plot_draws_the_wrk_rows_of_known_configurations_grouped_by_scenario() -> None:
    """bench/plot.py's choice of bars (the drawing itself needs matplotlib: make pictures)."""
    rows = [
        dataclasses.asdict(_row(config, scenario, 100.0, 0.01))
        for scenario in ("rs256-cached", "malformed-fresh")
        for config in ("d", "c-uvloop", "a-direct")
    ]
    rows.append({**rows[0], "tool": "h2load"})
    chosen = plot.wrk_rows({"rows": rows})
    assert {r["config"] for r in chosen} == {"d", "c-uvloop"}  # (a) is not drawn
    assert all(r["tool"] == "wrk" for r in chosen)
    assert plot.grouped(chosen) == (["rs256-cached", "malformed-fresh"], ["c-uvloop", "d"])


# -- the burning floor: a Check of known cost ---------------------------------------------------
def test_always_ok_spends_the_cpu_it_is_asked_for() -> None:
    """Each Check of `always_ok.py --burn-us N` uses at least N µs of its thread's CPU before
    it answers (a lower bound on work done, not a timing: waiting for a core never counts)."""
    import asyncio
    import time

    from bench import always_ok

    servicer = always_ok.AlwaysOk(burn_us=2000)
    request = external_auth_pb2.CheckRequest()

    async def three() -> list[external_auth_pb2.CheckResponse]:
        return [await servicer.Check(request, None) for _ in range(3)]

    before = time.thread_time()
    answers = asyncio.run(three())
    assert time.thread_time() - before >= 3 * 2000e-6
    assert all(answer is always_ok.OK for answer in answers)
    with pytest.raises(SystemExit):
        always_ok.main(["--port", "1", "--burn-us", "-1"])


def test_burning_floors_run_the_cached_token_with_their_cost(tmp_path: Path) -> None:
    from bench import run
    from bench.stack import Stack

    chosen = {c.key: c for c in run.configurations((), (10, 25))}
    assert chosen["c-burn10"].burn_us == 10
    assert chosen["c-burn10"].only == ("rs256-cached",)
    assert chosen["c-burn25"].loop == chosen["c-uvloop"].loop == "uvloop"

    def argv(key: str) -> list[str]:
        return Stack(chosen[key], tmp_path, "{}", tmp_path / "policies.yaml").authorizer_argv()

    burning = argv("c-burn25")
    assert burning[burning.index("--burn-us") + 1] == "25"
    assert "--burn-us" not in argv("c-uvloop")
    assert run._burns(run._parser(), " 10, 25,10,") == (10, 25)
    for refused in ("x", "0", "-5", "2.5", "100001"):
        with pytest.raises(SystemExit):
            run._burns(run._parser(), refused)


def test_table_shows_extauthz_mean_check() -> None:
    timed = dataclasses.replace(
        _row("d", "rs256-cached", 1000, 0.02), detail={"extauthz_mean_check_s": 31.25e-6}
    )
    table = report.format_table([timed, _row("c-uvloop", "rs256-cached", 1000, 0.02)])
    assert "Check µs" in table
    assert " 31.2 " in table.splitlines()[2]

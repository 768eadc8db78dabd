"""`extauthz test CASES.yaml`: a file of requests and expected statuses, driven through the
CLI's main() as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from extauthz.rig.rig import SAMPLES
from tests.support.commands import DEMO, cases_file, run


def test_the_shipped_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "test", str(SAMPLES / "cases.yaml"))
    assert code == 0, out + err
    lines = out.strip().splitlines()
    assert lines[-1] == "8 passed, 0 failed"
    assert lines[0].split() == [
        "NAME",
        "METHOD",
        "PATH",
        "TOKEN",
        "EXPECTED",
        "GOT",
        "RESULT",
        "REASON",
    ]
    assert all(line.split()[-1] == "ok" for line in lines[1:-1])


def test_the_shipped_cases_hold_istios_matrix() -> None:
    cases = yaml.safe_load((SAMPLES / "cases.yaml").read_text())
    matrix = yaml.safe_load((SAMPLES / "matrix.yaml").read_text())
    cells = {(c["path"], c.get("token", "none"), c["status"]) for c in cases["cases"]}
    assert {(m["path"], m["token"], m["status"]) for m in matrix} <= cells
    assert ("/productpage", "expired", 401) in cells and ("/productpage", "tampered", 401) in cells
    assert cases["tokens"]["demo"] == {"file": "demo.jwt"}


def test_a_wrong_expectation_is_a_mismatch_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = cases_file(
        tmp_path,
        """tokens: {demo: {file: demo.jwt}}
cases:
- {name: products with token, path: /api/v1/products/0, token: demo, status: 200}
- {name: products without token, path: /api/v1/products/0, status: 200}
""",
    )
    code, out, _ = run(capsys, "test", str(cases))
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("products without token"))
    assert row.split()[3:10] == [
        "GET",
        "/api/v1/products/0",
        "-",
        "200",
        "403",
        "MISMATCH",
        "denied",
    ]
    assert "denied by DENY policy istio-system/test-exclude (rules[0]:" in row
    assert out.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_several_files_are_summed_under_their_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = cases_file(tmp_path, "cases: [{name: wrong, path: /api/v1/products/0, status: 200}]")
    code, out, _ = run(capsys, "test", str(SAMPLES / "cases.yaml"), str(failing))
    assert code == 1
    assert f"== {SAMPLES / 'cases.yaml'}" in out and f"== {failing}" in out
    assert out.strip().splitlines()[-1] == "8 passed, 1 failed"


def test_a_wrong_body_is_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = cases_file(
        tmp_path,
        """tokens: {old: {mint: {key: key.pem, claims: {iss: testing@secure.istio.io}, exp: -1h}}}
cases:
- {name: expired, path: /productpage, token: old, status: 401, body: Jwt verification fails}
""",
    )
    code, out, _ = run(capsys, "test", str(cases))
    assert code == 1
    assert "MISMATCH  body 'Jwt is expired', expected 'Jwt verification fails'" in out


def test_cases_tokens_headers_and_methods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = cases_file(
        tmp_path,
        f"""tokens:
  literal: {{value: {DEMO}}}
  minted: {{mint: {{key: key.pem, claims: {{iss: testing@secure.istio.io, sub: x}}, exp: 10m}}}}
  early: {{mint: {{key: key.pem, claims: {{iss: testing@secure.istio.io, sub: x}}, nbf: 1h}}}}
cases:
- {{name: literal, path: /api/v1/products/0, token: literal, status: 200}}
- {{name: minted, path: /api/v1/products/0, token: minted, status: 200, method: POST, host: shop.test}}
- {{name: not yet valid, path: /productpage, token: early, status: 401, body: Jwt not yet valid}}
- {{name: header token, path: /api/v1/products/0, headers: {{Authorization: Bearer {DEMO}}}, status: 200}}
- {{name: query token, path: '/api/v1/products/0?access_token={DEMO}', status: 200}}
- {{name: explicit none, path: /api/v1/products/0, token: none, status: 403}}
""",
    )
    code, out, _ = run(capsys, "test", str(cases))
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "6 passed, 0 failed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("cases: [{name: typo, path: /x, stauts: 200}]", "cases[0] (typo): unknown key 'stauts'", id="unknown-case-key"),
        pytest.param("cases: [{name: short, path: /x}]", "cases[0] (short): missing key 'status'", id="missing-status"),
        pytest.param("cases: [{name: s, path: /x, status: '200'}]", "cases[0] (s): status: must be a number from 100 to 599", id="status-not-a-number"),
        pytest.param("cases: [{name: t, path: /x, status: 200, token: nope}]", "cases[0] (t): token: 'nope' is not defined under tokens", id="unknown-token"),
        pytest.param("cases: [{name: p, path: x, status: 200}]", "cases[0] (p): path 'x' must start with /", id="relative-path"),
        pytest.param("cases: [{name: h, path: /x, status: 200, headers: {x-n: 1}}]", "cases[0] (h): headers: must map strings to strings", id="header-not-a-string"),
        pytest.param("tokens: {a: {file: demo.jwt, value: x}}\ncases: [{name: a, path: /x, status: 200}]", "tokens.a: needs exactly one of file, value, mint", id="token-two-sources"),
        pytest.param("tokens: {a: {mint: {key: key.pem, exp: soon}}}\ncases: [{name: a, path: /x, status: 200}]", "tokens.a: mint: exp 'soon': not a duration", id="mint-bad-exp"),
        pytest.param("tokens: {a: {file: missing.jwt}}\ncases: [{name: a, path: /x, status: 200}]", "tokens.a: file: ", id="missing-token-file"),
        pytest.param("cases: []", "cases: must be a non-empty list", id="no-cases"),
        pytest.param("expect: 200\ncases: [{name: a, path: /x, status: 200}]", "unknown key 'expect'", id="unknown-top-level-key"),
        pytest.param("cases: [{name: a, path: /x, status: 200\n", "invalid YAML", id="invalid-yaml"),
    ],
)  # fmt: skip
def test_malformed_cases_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    cases = cases_file(tmp_path, body)
    code, out, err = run(capsys, "test", str(cases))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"extauthz test: error: {cases}")
    assert message in err

"""`extauthz check | token | jwks | test`, driven through the CLI's main() as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml

from extauthz.cli import main
from extauthz.rig.rig import SAMPLES
from extauthz.rig.tokens import SAMPLE_ISSUER, mint, sample_kid, tampered

GATEWAY = [
    "--config",
    str(SAMPLES / "gateway-policies.yaml"),
    "--namespace",
    "istio-system",
    "--labels",
    "app=istio-ingressgateway",
]
DEMO = (SAMPLES / "demo.jwt").read_text().strip()
EXPIRED = mint({"iss": SAMPLE_ISSUER, "sub": SAMPLE_ISSUER, "exp": 1_000_000_000})
ISSUER = "https://issuer.test"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extauthz", *argv], capture_output=True, text=True, timeout=60
    )


def claims_of(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = pyjwt.decode(token, options={"verify_signature": False})
    return payload


def policies(jwks: str, principal: str = f"{ISSUER}/alice", extra_rule: str = "") -> str:
    """A RequestAuthentication trusting `jwks` and an ALLOW for one request principal."""
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwks: {json.dumps(jwks)}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-alice, namespace: foo}}
spec:
  rules:
  - from:
    - source: {{requestPrincipals: [{json.dumps(principal)}]}}
{extra_rule}"""


# -- check ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "token", "code", "expected"),
    [
        pytest.param("/productpage", "", 0, ["ALLOW 200", "jwt       Ok: no token", "reason    no ALLOW policy applies"], id="exempt-path-without-token"),
        pytest.param("/api/v1/products/0", "", 1, ["DENY 403", "policy    istio-system/test-exclude rules[0]", "notRequestPrincipals and to[0].operation.notPaths matched", "body      RBAC: access denied"], id="api-without-token-denied"),
        pytest.param("/api/v1/products/1", DEMO, 0, ["ALLOW 200", f"request principal {SAMPLE_ISSUER}/{SAMPLE_ISSUER}", "upstream  remove header authorization"], id="api-with-demo-token"),
        pytest.param("/productpage", EXPIRED, 1, ["UNAUTHENTICATED 401", "JwtExpired: Jwt is expired", "body      Jwt is expired", 'www-authenticate: Bearer realm="http://localhost/productpage"'], id="expired-token"),
        pytest.param("/productpage", tampered(DEMO), 1, ["UNAUTHENTICATED 401", "JwtVerificationFail: Jwt verification fails"], id="tampered-token"),
    ],
)  # fmt: skip
def test_check_explains_the_decision(
    capsys: pytest.CaptureFixture[str], path: str, token: str, code: int, expected: list[str]
) -> None:
    argv = [*GATEWAY, "--token", token] if token else GATEWAY
    got, out, err = run(capsys, "check", *argv, path)
    assert got == code, out + err
    for text in expected:
        assert text in out
    assert "RequestAuthentication istio-system/jwt-example" in out
    assert "AuthorizationPolicy istio-system/test-exclude (DENY)" in out


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "check", *GATEWAY, "--json", "--host", "shop.test", "/api/v1/products/0?x=1"
    )
    report = json.loads(out)
    assert code == 1
    assert report["verdict"] == "deny" and report["status"] == 403
    assert report["body"] == "RBAC: access denied"
    assert (report["policy"], report["rule"]) == ("istio-system/test-exclude", 0)
    assert report["detail"].startswith("rules[0]: from[0].source.notRequestPrincipals")
    assert report["jwt"]["status"] == "Ok" and report["jwt"]["principal"] == ""
    assert report["request"] == {
        "method": "GET",
        "host": "shop.test",
        "path": "/api/v1/products/0",
        "query": "x=1",
    }
    assert report["applied"] == [
        "RequestAuthentication istio-system/jwt-example",
        "AuthorizationPolicy istio-system/test-exclude (DENY)",
    ]


def test_check_json_unauthenticated(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", *GATEWAY, "--json", "--token", EXPIRED, "/productpage")
    report = json.loads(out)
    assert code == 1
    assert (report["verdict"], report["status"]) == ("unauthenticated", 401)
    assert report["jwt"]["status"] == "JwtExpired"
    assert report["jwt"]["issuer"] == SAMPLE_ISSUER and report["jwt"]["kid"] == sample_kid()
    assert report["response_headers"]["www-authenticate"].startswith('Bearer realm="http://')


AUDIT_AND_DRY_RUN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: foo}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"""


def test_check_reports_audit_and_dry_run_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(AUDIT_AND_DRY_RUN)
    code, out, _ = run(capsys, "check", "--config", str(config), "--namespace", "foo", "/admin/x")
    assert code == 0, out
    assert "audit     AUDIT foo/audit-admin rules[0]" in out
    assert "dry-run   DENY foo/deny-admin rules[0]" in out


def test_check_request_flags_reach_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/bar/sa/client], ipBlocks: [10.0.0.0/8], remoteIpBlocks: [192.0.2.7]}}]
    to: [{operation: {methods: [POST], hosts: [api.test], ports: ["8080"]}}]
    when: [{key: "request.headers[x-team]", values: [dev]}]
""")
    base = ["check", "--config", str(config), "--namespace", "foo", "--labels", "app=httpbin"]
    flags = [
        "--method",
        "POST",
        "--host",
        "api.test",
        "--port",
        "8080",
        "--header",
        "X-Team: dev",
        "--source-ip",
        "10.1.2.3",
        "--header",
        "x-forwarded-for: 192.0.2.7",
        "--principal",
        "spiffe://cluster.local/ns/bar/sa/client",
    ]
    assert run(capsys, *base, *flags, "/post")[0] == 0
    code, out, _ = run(capsys, *base, *flags[:-2], "/post")  # without the peer identity
    assert code == 1
    assert "from did not match (from[0].source.principals)" in out


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        pytest.param(["--host", "api.test"], 0, id="host-flag"),
        pytest.param(["--header", "Host: api.test"], 0, id="host-header-becomes-authority"),
        pytest.param(["--host", "other.test"], 1, id="other-host"),
        pytest.param([], 1, id="default-host-localhost"),
    ],
)  # fmt: skip
def test_check_sends_pseudo_headers_as_envoy_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], code: int
) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\n"
        "spec:\n  rules:\n  - when: [{key: 'request.headers[:authority]', values: [api.test]}]\n"
    )  # fmt: skip
    assert (
        run(capsys, "check", "--config", str(config), "--namespace", "foo", *flags, "/x")[0] == code
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--config", "missing.yaml", "/x"], "missing.yaml: no such file or directory", id="missing-config"),
        pytest.param([*GATEWAY[:2], "--labels", "app", "/x"], "label 'app' is not key=value", id="bad-labels"),
        pytest.param([*GATEWAY, "--header", "no-colon", "/x"], "header 'no-colon' is not 'name: value'", id="bad-header"),
        pytest.param([*GATEWAY, "productpage"], "path 'productpage' must start with /", id="relative-path"),
        pytest.param([*GATEWAY, "--source-ip", "1.2.3", "/x"], "source ip '1.2.3' is not an IP address", id="bad-ip"),
        pytest.param([*GATEWAY, "--token", "t", "--header", "authorization: Bearer u", "/x"], "a token and an Authorization header", id="token-twice"),
        pytest.param([*GATEWAY, "--token-file", "missing.jwt", "/x"], "missing.jwt: cannot read", id="missing-token-file"),
    ],
)  # fmt: skip
def test_check_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "check", *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("extauthz check: error: ")
    assert message in err


def test_check_invalid_policy_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: MAYBE}\n"
    )
    done = run_process("check", "--config", str(bad), "/x")
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "'MAYBE' is not one of" in done.stderr


@pytest.mark.parametrize(
    ("path", "code"),
    [pytest.param("/productpage", 0, id="allowed-0"), pytest.param("/api/v1/products/0", 1, id="denied-1")],
)  # fmt: skip
def test_check_exit_status_of_the_process(path: str, code: int) -> None:
    done = run_process("check", *GATEWAY, path)
    assert done.returncode == code, done.stderr
    assert done.stderr == ""


class _JwksHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[str, Path]]:
    """A JWKS endpoint on a free loopback port serving a fresh ES256 key, and that key."""
    key = tmp_path / "ec.pem"
    main(["token", "--generate", "ES256", "--out-key", str(key)])
    capsys.readouterr()
    main(["jwks", "--key", str(key)])
    _JwksHandler.body = capsys.readouterr().out.encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_check_fetches_a_jwks_uri_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jwks_server: tuple[str, Path]
) -> None:
    uri, key = jwks_server
    config = tmp_path / "p.yaml"
    config.write_text(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: foo}\n"
        f"spec:\n  jwtRules:\n  - {{issuer: {ISSUER}, jwksUri: '{uri}'}}\n"
    )  # fmt: skip
    token = run(capsys, "token", "--key", str(key), "--iss", ISSUER, "--sub", "alice")[1].strip()
    code, out, _ = run(
        capsys, "check", "--config", str(config), "--namespace", "foo", "--token", token, "/x"
    )
    assert code == 0, out
    assert f"request principal {ISSUER}/alice" in out
    assert f"jwks      {uri}: 1 keys" in out


# -- token and jwks -------------------------------------------------------------------------


def _generate(capsys: pytest.CaptureFixture[str], alg: str, key: Path, *claims: str) -> str:
    code, out, err = run(capsys, "token", "--generate", alg, "--out-key", str(key), *claims)
    assert code == 0, err
    return out.strip()


def _jwks_of(capsys: pytest.CaptureFixture[str], key: Path, alg: str) -> str:
    hmac = ["--alg", alg] if alg.startswith("HS") else []
    code, out, err = run(capsys, "jwks", "--key", str(key), *hmac)
    assert code == 0, err
    return out.strip()


@pytest.mark.parametrize("alg", ["RS256", "PS384", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS512"])  # fmt: skip
def test_token_round_trip_through_jwks_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alg: str
) -> None:
    key, other_key = tmp_path / "key", tmp_path / "other"
    token = _generate(capsys, alg, key, "--iss", ISSUER, "--sub", "alice")
    forged = _generate(capsys, alg, other_key, "--iss", ISSUER, "--sub", "alice", "--kid", "")
    jwks = _jwks_of(capsys, key, alg)
    assert pyjwt.get_unverified_header(token)["alg"] == alg
    assert pyjwt.get_unverified_header(token)["kid"] == json.loads(jwks)["keys"][0]["kid"]
    config = tmp_path / "p.yaml"
    config.write_text(policies(jwks))
    check = ["check", "--config", str(config), "--namespace", "foo"]
    code, out, _ = run(capsys, *check, "--token", token, "/x")
    assert code == 0, out
    assert f"request principal {ISSUER}/alice" in out
    # The same claims signed by another key of the same kind must not pass with this JWKS.
    code, out, _ = run(capsys, *check, "--token", forged, "/x")
    assert code == 1
    assert "JwtVerificationFail" in out


def test_token_from_an_existing_key_and_an_explicit_alg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "rsa.pem"
    _generate(capsys, "RS256", key)
    code, token, _ = run(
        capsys, "token", "--key", str(key), "--alg", "PS512", "--iss", ISSUER, "--sub", "alice"
    )
    token = token.strip()
    assert code == 0 and pyjwt.get_unverified_header(token)["alg"] == "PS512"
    config = tmp_path / "p.yaml"
    config.write_text(policies(_jwks_of(capsys, key, "RS256")))
    assert (
        run(capsys, "check", "--config", str(config), "--namespace", "foo", "--token", token, "/x")[
            0
        ]
        == 0
    )


def test_hmac_secret_file_with_a_trailing_newline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    code, out, err = run(capsys, "token", "--key", str(secret), "--alg", "HS256", "--iss", ISSUER)
    assert code == 0 and err == ""
    pyjwt.decode(out.strip(), b"0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    jwk = json.loads(_jwks_of(capsys, secret, "HS256"))["keys"][0]
    assert (jwk["kty"], jwk["alg"]) == ("oct", "HS256")
    assert pyjwt.get_unverified_header(out.strip())["kid"] == jwk["kid"]


def test_jwks_of_istios_sample_key_is_istios_jwks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "jwks", "--key", str(SAMPLES / "key.pem"))
    ours = json.loads(out)["keys"][0]
    istio = json.loads((SAMPLES / "jwks.json").read_text())["keys"][0]
    assert code == 0
    assert {k: ours[k] for k in ("kty", "n", "e", "kid")} == istio
    assert "alg" not in ours  # an RSA key verifies RS* and PS* unless --alg pins it
    token = run(capsys, "token", "--key", str(SAMPLES / "key.pem"), "--iss", SAMPLE_ISSUER)[1]
    assert pyjwt.get_unverified_header(token.strip())["kid"] == sample_kid()


def test_jwks_of_a_public_key_equals_that_of_its_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization

    private = tmp_path / "ed.pem"
    _generate(capsys, "EdDSA", private)
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public = tmp_path / "ed.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert _jwks_of(capsys, public, "EdDSA") == _jwks_of(capsys, private, "EdDSA")
    assert json.loads(_jwks_of(capsys, public, "EdDSA"))["keys"][0]["alg"] == "EdDSA"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        pytest.param("n=3", 3, id="number"),
        pytest.param('groups=["a","b"]', ["a", "b"], id="json-list"),
        pytest.param("admin=true", True, id="boolean"),
        pytest.param('org={"team":"blue"}', {"team": "blue"}, id="json-object"),
        pytest.param("team=dev", "dev", id="plain-string"),
        pytest.param('quoted="007"', "007", id="json-string"),
        pytest.param("url=https://a.test/?x=y", "https://a.test/?x=y", id="value-with-equals"),
        pytest.param("empty=", "", id="empty-string"),
    ],
)  # fmt: skip
def test_claims_are_json_when_they_parse(
    capsys: pytest.CaptureFixture[str], claim: str, value: Any
) -> None:
    name = claim.partition("=")[0]
    code, out, _ = run(capsys, "token", "--key", str(SAMPLES / "key.pem"), "--claim", claim)
    assert code == 0
    assert claims_of(out.strip())[name] == value


def test_claims_override_the_named_flags(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(
        capsys,
        "token",
        "--key",
        str(SAMPLES / "key.pem"),
        "--iss",
        "a",
        "--sub",
        "b",
        "--aud",
        "x",
        "--aud",
        "y",
        "--claim",
        "iss=c",
    )
    claims = claims_of(out.strip())
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("c", "b", ["x", "y"])


@pytest.mark.parametrize(
    ("flags", "exp", "nbf"),
    [
        pytest.param([], 3600, None, id="default-one-hour-no-nbf"),
        pytest.param(["--exp", "30s"], 30, None, id="seconds"),
        pytest.param(["--exp", "10m"], 600, None, id="minutes"),
        pytest.param(["--exp", "2d"], 172800, None, id="days"),
        pytest.param(["--exp", "90"], 90, None, id="bare-seconds"),
        pytest.param(["--exp=-1h"], -3600, None, id="expired"),
        pytest.param(["--exp", "0"], None, None, id="no-exp"),
        pytest.param(["--nbf", "10m"], 3600, 600, id="not-yet-valid"),
    ],
)  # fmt: skip
def test_exp_and_nbf_are_relative_to_iat(
    capsys: pytest.CaptureFixture[str], flags: list[str], exp: int | None, nbf: int | None
) -> None:
    code, out, _ = run(capsys, "token", "--key", str(SAMPLES / "key.pem"), *flags)
    claims = claims_of(out.strip())
    assert code == 0
    assert (claims["exp"] - claims["iat"] if "exp" in claims else None) == exp
    assert (claims["nbf"] - claims["iat"] if "nbf" in claims else None) == nbf


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["token", "--key", "KEY", "--exp", "5y"], "--exp '5y': not a duration", id="bad-duration"),
        pytest.param(["token", "--key", "KEY", "--claim", "=x"], "--claim '=x': not name=value", id="bad-claim"),
        pytest.param(["token", "--generate", "ES256K"], "alg 'ES256K' is not one of", id="unsupported-alg"),
        pytest.param(["token", "--key", "KEY", "--alg", "ES256"], "this key signs RS256/RS384/RS512/PS256/PS384/PS512, not ES256", id="alg-of-another-key-type"),
        pytest.param(["token", "--key", "JWKS"], "not a PEM key (for an HMAC secret file add --alg HS256)", id="not-a-key"),
        pytest.param(["token", "--key", "MISSING"], "cannot read", id="missing-key"),
        pytest.param(["token", "--generate", "RS256", "--out-key", "KEY"], "exists; not overwriting a key", id="never-overwrites"),
        pytest.param(["token", "--generate", "RS256", "--alg", "ES256"], "--generate RS256 and --alg ES256 disagree", id="generate-and-alg-disagree"),
        pytest.param(["jwks", "--key", "KEY", "--alg", "EdDSA"], "not EdDSA", id="jwks-alg-of-another-key-type"),
    ],
)  # fmt: skip
def test_token_and_jwks_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    files = {
        "KEY": str(SAMPLES / "key.pem"),
        "JWKS": str(SAMPLES / "jwks.json"),
        "MISSING": str(tmp_path / "nope.pem"),
    }
    code, out, err = run(capsys, *[files.get(arg, arg) for arg in argv])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_a_public_key_cannot_sign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((SAMPLES / "key.pem").read_bytes(), password=None)
    public = tmp_path / "pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, _, err = run(capsys, "token", "--key", str(public))
    assert code == 2 and "a public key cannot sign" in err


# -- test -----------------------------------------------------------------------------------


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


def _cases_file(tmp_path: Path, body: str) -> Path:
    """A cases file next to copies of the sample policy, token and key."""
    for name in ("gateway-policies.yaml", "demo.jwt", "key.pem"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    path = tmp_path / "cases.yaml"
    path.write_text(
        "config: gateway-policies.yaml\n"
        "workload: {namespace: istio-system, labels: {app: istio-ingressgateway}}\n" + body
    )
    return path


def test_a_wrong_expectation_is_a_mismatch_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _cases_file(
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
    failing = _cases_file(tmp_path, "cases: [{name: wrong, path: /api/v1/products/0, status: 200}]")
    code, out, _ = run(capsys, "test", str(SAMPLES / "cases.yaml"), str(failing))
    assert code == 1
    assert f"== {SAMPLES / 'cases.yaml'}" in out and f"== {failing}" in out
    assert out.strip().splitlines()[-1] == "8 passed, 1 failed"


def test_a_wrong_body_is_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _cases_file(
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
    cases = _cases_file(
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
    cases = _cases_file(tmp_path, body)
    code, out, err = run(capsys, "test", str(cases))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"extauthz test: error: {cases}")
    assert message in err


def test_cases_with_an_invalid_policy_exit_2(tmp_path: Path) -> None:
    cases = _cases_file(tmp_path, "cases: [{name: a, path: /x, status: 200}]")
    (tmp_path / "gateway-policies.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{to: [{operation: {pathz: [/]}}]}]}\n"
    )
    done = run_process("test", str(cases))
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "config:" in done.stderr and "pathz: unknown field" in done.stderr


# -- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "token", "jwks", "test"])
def test_every_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "examples:" in out and f"extauthz {command}" in out

"""`extauthz check`: one request through the pure core, explained, driven through the CLI's
main() as a user would. As a process (exit status, one-line errors): see
tests/integration/test_cli.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from extauthz.cli import main
from extauthz.rig.tokens import SAMPLE_ISSUER, mint, sample_kid, tampered
from tests.support.commands import DEMO, GATEWAY, ISSUER, run

EXPIRED = mint({"iss": SAMPLE_ISSUER, "sub": SAMPLE_ISSUER, "exp": 1_000_000_000})


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
        "--remote-ip",
        "192.0.2.7",
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

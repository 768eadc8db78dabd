"""`extauthz demo` / `make demo`: the rig, Istio's sample matrix through a real Envoy, and
the curl commands to try it by hand."""

from __future__ import annotations

import signal
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from extauthz.rig.rig import SAMPLES, Rig
from extauthz.rig.tokens import invalid_tokens


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str]


def http_get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return Answer(response.status, response.read().decode(errors="replace"),
                          {k.lower(): v for k, v in response.headers.items()})  # fmt: skip
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(errors="replace"),
                      {k.lower(): v for k, v in exc.headers.items()})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    path: str
    token: str  # none | demo | tampered | expired | unknown-issuer
    via: str  # header | query
    expected: int
    got: int

    @property
    def is_ok(self) -> bool:
        return self.expected == self.got


def matrix_cases() -> list[tuple[str, str, int]]:
    """(path, token name, expected status): Istio's matrix plus the invalid tokens (401)."""
    cases = [(c["path"], c["token"], int(c["status"]))
             for c in yaml.safe_load((SAMPLES / "matrix.yaml").read_text())]  # fmt: skip
    paths = list(dict.fromkeys(path for path, _, _ in cases))
    for name in ("tampered", "expired", "unknown-issuer"):
        cases.extend((path, name, 401) for path in paths)
    return cases


def run_matrix(rig: Rig) -> list[Row]:
    tokens = {"none": "", "demo": rig.demo_token}
    tokens.update({name: token for name, (token, _) in invalid_tokens(rig.demo_token).items()})
    rows = []
    for path, name, expected in matrix_cases():
        token = tokens[name]
        for via in ("header", "query") if token else ("header",):
            url = f"{rig.gateway_url}{path}"
            headers = {}
            if token and via == "header":
                headers["Authorization"] = f"Bearer {token}"
            elif token:
                url += f"?access_token={token}"
            rows.append(Row(path, name, via, expected, http_get(url, headers).status))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [f"{'path':<22} {'token':<15} {'sent as':<8} {'expected':>8} {'got':>5}  ",
             "-" * 66]  # fmt: skip
    for row in rows:
        mark = "ok" if row.is_ok else "MISMATCH"
        lines.append(
            f"{row.path:<22} {row.token:<15} {row.via:<8} {row.expected:>8} {row.got:>5}  {mark}"
        )
    return "\n".join(lines)


def _hints(rig: Rig) -> str:
    token_file = SAMPLES / "demo.jwt"
    return f"""
Try it yourself (Ctrl-C stops everything):
  curl -i {rig.gateway_url}/productpage
  curl -i {rig.gateway_url}/api/v1/products/0
  curl -i -H "Authorization: Bearer $(cat {token_file})" {rig.gateway_url}/api/v1/products/0
  curl -i -H "Authorization: Bearer $(cat {token_file})" {rig.sidecar_url}/headers
Logs (extauthz decision lines included): {rig.workdir}
"""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(keep_serving: bool = True) -> int:
    # SIGTERM (and SIGINT even when a shell started us in the background) stop the rig
    # cleanly, so no Envoy or upstream outlives the demo.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="extauthz-demo-"))
    print(f"Starting Envoy, extauthz and the upstreams on 127.0.0.1 (logs in {workdir}) ...")
    with Rig(workdir) as rig:
        rows = run_matrix(rig)
        print("\nScenario 1, gateway with inline JWKS (Istio's sample policies):\n")
        print(format_table(rows))
        sidecar = http_get(
            f"{rig.sidecar_url}/headers", {"Authorization": f"Bearer {rig.demo_token}"}
        )
        forwarded = "authorization" in sidecar.body.lower()
        sidecar_ok = sidecar.status == 200 and not forwarded
        print("\nScenario 2, sidecar with jwksUri (keys fetched from the JWKS server):\n")
        print(f"GET /headers with demo.jwt -> {sidecar.status} (expected 200), "
              f"Authorization forwarded upstream: {'yes' if forwarded else 'no'} (expected no)"
              f"  {'ok' if sidecar_ok else 'MISMATCH'}")  # fmt: skip
        failures = sum(not row.is_ok for row in rows) + (0 if sidecar_ok else 1)
        print(f"\n{len(rows) + 1 - failures} passed, {failures} failed")
        if not keep_serving:
            return 1 if failures else 0
        print(_hints(rig))
        try:
            while all(process.is_running for process in rig.processes.values()):
                time.sleep(0.5)
            print("a process exited; stopping")
        except KeyboardInterrupt:
            print("\nstopping")
        return 1 if failures else 0

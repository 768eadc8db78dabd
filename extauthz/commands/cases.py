"""`extauthz test`: a YAML file of requests and expected statuses."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from extauthz.attributes import RequestAttributes
from extauthz.commands.check import fetch_remote_keys, load_snapshot, request_attributes
from extauthz.commands.common import EXIT_DENIED, UsageError, read_file
from extauthz.commands.tokens import (
    _check_alg,
    load_signing_key,
    mint,
    parse_duration,
    token_claims,
)
from extauthz.config.parse import ConfigError
from extauthz.config.workload import DEFAULT_ROOT_NAMESPACE, Workload
from extauthz.decision import Decision, decide
from extauthz.snapshot.compile import Snapshot

# -- extauthz test --------------------------------------------------------------------------

TEST_EXAMPLES = """
exit status: 0 every case passed, 1 a case got another status, 2 a bad cases file

a cases file (paths are relative to it):
  config: [gateway-policies.yaml]          # Istio YAML files or directories
  workload: {namespace: istio-system, labels: {app: istio-ingressgateway}}
  rootNamespace: istio-system              # optional
  tokens:                                  # named tokens: file, value or mint
    demo: {file: demo.jwt}
    literal: {value: "eyJ..."}
    expired: {mint: {key: key.pem, claims: {iss: testing@secure.istio.io}, exp: -1h}}
  cases:
  - {name: productpage without token, path: /productpage, status: 200}
  - name: products with the demo token
    path: /api/v1/products/0
    token: demo                            # sent as Authorization: Bearer
    status: 200
    method: GET                            # optional: method, host, headers, sourceIp,
    headers: {x-team: dev}                 # remoteIp, port, principal, and body (the
    host: example.com                      # exact response body expected)

examples:
  extauthz test extauthz/samples/cases.yaml
"""


def add_test(commands: Any) -> None:
    test = commands.add_parser(
        "test",
        help="run a YAML file of requests and expected statuses",
        description="Run every case of a cases file through the decision and compare statuses.",
        epilog=TEST_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("files", nargs="+", metavar="CASES.yaml")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    token: str  # the token's name in the file, "" for none
    status: int
    body: str | None  # the exact response body expected, when given
    attrs: RequestAttributes


@dataclass(frozen=True, slots=True)
class CaseFile:
    path: Path
    snapshot: Snapshot
    cases: tuple[Case, ...]


_FILE_KEYS = ("config", "workload", "rootNamespace", "tokens", "cases")
_TOKEN_KEYS = ("file", "value", "mint")
_MINT_KEYS = ("key", "alg", "kid", "claims", "exp", "nbf")
_CASE_KEYS = ("name", "path", "status", "method", "host", "headers", "token", "body",
              "sourceIp", "remoteIp", "port", "principal")  # fmt: skip


class _Fields:
    """One mapping of a cases file, read strictly: unknown or missing keys and wrong types
    are errors that say where they are."""

    def __init__(
        self, value: Any, where: str, known: Sequence[str], required: Sequence[str] = ()
    ) -> None:
        self.where = where
        if not isinstance(value, dict):
            raise UsageError(f"{where}: must be a mapping, not {type(value).__name__}")
        unknown = [str(key) for key in value if key not in known]
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        missing = [key for key in required if key not in value]
        if missing:
            raise UsageError(f"{where}: missing key {missing[0]!r}")
        self.values: dict[str, Any] = value

    def error(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.where}: {key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def text(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {type(value).__name__}")
        return value

    def number(self, key: str, default: int, low: int, high: int) -> int:
        value = self.values.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(key, f"must be a number from {low} to {high}, not {value!r}")
        return value

    def strings(self, key: str) -> dict[str, str]:
        """A mapping of strings to strings (labels, headers)."""
        value = self.values.get(key) or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error(key, "must map strings to strings (quote numbers and booleans)")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.values.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.error(key, "must be a mapping with string keys")
        return value


def _token_value(value: Any, where: str, base: Path) -> str:
    spec = _Fields(value, where, _TOKEN_KEYS)
    if len(spec.values) != 1:
        raise UsageError(f"{where}: needs exactly one of {', '.join(_TOKEN_KEYS)}")
    if spec.has("value"):
        return spec.text("value").strip()
    if spec.has("file"):
        try:
            return read_file(base / spec.text("file")).decode("utf-8", "replace").strip()
        except UsageError as exc:
            raise spec.error("file", str(exc)) from exc
    return _minted(_Fields(spec.raw("mint"), f"{where}: mint", _MINT_KEYS, ("key",)), base)


def _minted(spec: _Fields, base: Path) -> str:
    alg, key_file = spec.text("alg") if spec.has("alg") else None, spec.text("key")
    kid, extra = spec.text("kid") if spec.has("kid") else None, spec.mapping("claims")
    try:
        key = load_signing_key(base / key_file, _check_alg(alg) if alg is not None else None)
        claims = token_claims(
            int(time.time()),
            expires_in=parse_duration(spec.raw("exp", "1h"), "exp"),
            not_before_in=parse_duration(spec.raw("nbf", 0), "nbf"),
            extra=extra,
        )
        return mint(key, claims, kid)
    except UsageError as exc:
        raise UsageError(f"{spec.where}: {exc}") from exc


def _case(value: Any, where: str, tokens: Mapping[str, str]) -> Case:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        where = f"{where} ({value['name']})"
    spec = _Fields(value, where, _CASE_KEYS, ("name", "path", "status"))
    token = spec.raw("token")
    if token is None or token == "none":
        token = ""
    elif token not in tokens:
        raise spec.error("token", f"{token!r} is not defined under tokens")
    path, method, host = spec.text("path"), spec.text("method", "GET"), spec.text("host")
    headers = [(name.lower(), value) for name, value in spec.strings("headers").items()]
    source_ip, remote_ip = spec.text("sourceIp"), spec.text("remoteIp")
    port, principal = spec.number("port", 0, 0, 65535), spec.text("principal")
    try:
        attrs = request_attributes(
            path, method=method, host=host, headers=headers, token=tokens[token] if token else "",
            source_ip=source_ip, remote_ip=remote_ip, port=port, principal=principal,
        )  # fmt: skip
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from exc
    return Case(
        spec.text("name"),
        token,
        spec.number("status", 0, 100, 599),
        spec.text("body") if spec.has("body") else None,
        attrs,
    )


def load_cases(path: Path) -> CaseFile:
    """Parse and check a whole cases file before anything runs: tokens are read or minted,
    every request is built, the configuration is loaded and compiled."""
    try:
        document = yaml.safe_load(read_file(path))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML: {exc}") from exc
    spec = _Fields(document, str(path), _FILE_KEYS, ("config", "workload", "cases"))
    base = path.parent
    config = spec.raw("config")
    config = [config] if isinstance(config, str) else config
    if not isinstance(config, list) or not config or not all(isinstance(c, str) for c in config):
        raise spec.error("config", "must be a path or a non-empty list of paths")
    place = _Fields(spec.raw("workload"), f"{path}: workload", ("namespace", "labels"),
                    ("namespace",))  # fmt: skip
    workload = Workload(place.text("namespace"), MappingProxyType(place.strings("labels")))
    tokens = spec.mapping("tokens")
    if "none" in tokens:
        raise spec.error("tokens", "'none' means no token; give the token another name")
    values = {name: _token_value(t, f"{path}: tokens.{name}", base) for name, t in tokens.items()}
    cases = spec.raw("cases")
    if not isinstance(cases, list) or not cases:
        raise spec.error("cases", "must be a non-empty list")
    parsed = tuple(_case(c, f"{path}: cases[{i}]", values) for i, c in enumerate(cases))
    root = spec.text("rootNamespace", DEFAULT_ROOT_NAMESPACE)
    try:
        snapshot = load_snapshot([base / c for c in config], workload, root)
    except ConfigError as exc:
        raise UsageError(f"{path}: config: {exc}") from exc
    return CaseFile(path, snapshot, parsed)


def _mismatch(case: Case, decision: Decision) -> str:
    """Why a case failed; "" when it passed."""
    if decision.http_status != case.status:
        why = decision.reason
        if decision.authz is not None and decision.authz.detail:
            why += f" ({decision.authz.detail})"
        return why
    if case.body is not None and decision.body != case.body:
        return f"body {decision.body!r}, expected {case.body!r}"
    return ""


def run_cases(case_file: CaseFile, now: int) -> list[list[str]]:
    """One row per case: name, method, path, token, expected, got, result, why."""
    store = fetch_remote_keys(case_file.snapshot.jwks_sources)
    rows = []
    for case in case_file.cases:
        decision = decide(case.attrs, case_file.snapshot, store.keys, now)
        why = _mismatch(case, decision)
        path = case.attrs.original_path
        rows.append(
            [
                case.name,
                case.attrs.method,
                path,
                case.token or "-",
                str(case.status),
                str(decision.http_status),
                "MISMATCH" if why else "ok",
                why,
            ]
        )
    return rows


def _table(rows: Sequence[Sequence[str]]) -> str:
    header = ["NAME", "METHOD", "PATH", "TOKEN", "EXPECTED", "GOT", "RESULT", "REASON"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def run_test(args: argparse.Namespace) -> int:
    case_files = [load_cases(Path(name)) for name in args.files]
    passed = failed = 0
    for case_file in case_files:
        rows = run_cases(case_file, int(time.time()))
        if len(case_files) > 1:
            print(f"== {case_file.path}")
        print(_table(rows))
        failures = sum(row[6] == "MISMATCH" for row in rows)
        failed += failures
        passed += len(rows) - failures
    print(f"{passed} passed, {failed} failed")
    return EXIT_DENIED if failed else 0

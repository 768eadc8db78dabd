"""`extauthz check`: one request, as Envoy would send it, through the pure core, explained."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import is_cors_preflight
from extauthz.authn.jwks_fetcher import JwksFetcher
from extauthz.authn.key_store import KeyStore
from extauthz.authn.providers import JwksSource
from extauthz.authn.status import JwtStatus
from extauthz.commands.common import DEFAULT_HOST, EXIT_ALLOWED, EXIT_DENIED, UsageError, read_file
from extauthz.config.parse import load_config
from extauthz.config.workload import DEFAULT_ROOT_NAMESPACE, Workload, parse_labels
from extauthz.decision import Decision, Verdict, decide
from extauthz.server.envoy_api import response_facts, to_attributes
from extauthz.snapshot.compile import Snapshot, compile_generation
from extauthz.summary import DecisionSummary

# -- one request ----------------------------------------------------------------------------


def _ip(value: str, what: str) -> str:
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise UsageError(f"{what} {value!r} is not an IP address") from exc
    return value


def parse_header(text: str) -> tuple[str, str]:
    """`name: value` -> (lower-case name, value); pseudo-headers such as `:authority` too."""
    colon = text.find(":", 1)
    if colon < 0 or not text[:colon].strip():
        raise UsageError(f"header {text!r} is not 'name: value'")
    return text[:colon].strip().lower(), text[colon + 1 :].strip()


def check_request(
    raw_path: str,
    *,
    method: str = "GET",
    host: str = "",
    headers: Iterable[tuple[str, str]] = (),
    token: str = "",
    source_ip: str = "",
    port: int = 0,
    principal: str = "",
) -> external_auth_pb2.CheckRequest:
    """The CheckRequest Envoy would send for this request: lower-case headers with the
    pseudo-headers, the path with its query, the peer's address and identity."""
    if not raw_path.startswith("/"):
        raise UsageError(f"path {raw_path!r} must start with /")
    merged: dict[str, str] = {}
    for name, value in headers:
        # Repeated headers reach ext_authz joined by commas, as Envoy sends them.
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    # Envoy turns Host into :authority; the flags win over headers naming the same thing.
    host_header = merged.pop("host", "")
    host = host or host_header or merged.get(":authority", "") or DEFAULT_HOST
    if token:
        if "authorization" in merged:
            raise UsageError("a token and an Authorization header were both given; pass one")
        merged["authorization"] = f"Bearer {token}"
    merged.update({":authority": host, ":method": method, ":path": raw_path, ":scheme": "http"})
    request = external_auth_pb2.CheckRequest()
    attributes = request.attributes
    http = attributes.request.http
    http.method, http.host, http.path, http.scheme = method, host, raw_path, "http"
    http.headers.update(merged)
    attributes.source.address.socket_address.address = _ip(source_ip, "source ip")
    attributes.source.principal = principal
    attributes.destination.address.socket_address.port_value = port
    return request


def request_attributes(
    raw_path: str,
    *,
    method: str = "GET",
    host: str = "",
    headers: Iterable[tuple[str, str]] = (),
    token: str = "",
    source_ip: str = "",
    remote_ip: str = "",
    port: int = 0,
    principal: str = "",
) -> RequestAttributes:
    """This request as `serve` sees it: its CheckRequest through the same conversion, so
    remote.ip is the source ip, as in Envoy without trusted hops, unless `remote_ip` names the
    client trusted proxies would have found."""
    request = check_request(
        raw_path, method=method, host=host, headers=headers, token=token, source_ip=source_ip,
        port=port, principal=principal,
    )  # fmt: skip
    attrs = to_attributes(request)
    remote_ip = _ip(remote_ip, "remote ip")
    return replace(attrs, remote_ip=remote_ip) if remote_ip else attrs


def load_snapshot(paths: Sequence[str | Path], workload: Workload, root_namespace: str) -> Snapshot:
    """What `serve` would enforce for this workload (resources without a namespace get the
    workload's, as in `serve`)."""
    config = load_config(paths, default_namespace=workload.namespace)
    return compile_generation(config, root_namespace).snapshot_for(workload)


def fetch_remote_keys(sources: Mapping[str, JwksSource]) -> KeyStore:
    """Each jwksUri (or OIDC discovery document) fetched once, waiting at most its timeout."""
    store = KeyStore()
    if sources:
        asyncio.run(_fetch_once(store, dict(sources)))
    return store


async def _fetch_once(store: KeyStore, sources: dict[str, JwksSource]) -> None:
    fetcher = JwksFetcher(store)
    try:
        await fetcher.track(sources)
    finally:
        await fetcher.close()


# -- extauthz check -------------------------------------------------------------------------

CHECK_EXAMPLES = """
exit status: 0 allowed, 1 denied or unauthenticated, 2 bad flags or configuration

examples:
  # Istio's sample gateway: /api/v1/products/0 without a token is denied (403)
  extauthz check --config extauthz/samples/gateway-policies.yaml --namespace istio-system \\
      --labels app=istio-ingressgateway /api/v1/products/0
  # ... and allowed with the demo token
  extauthz check --config extauthz/samples/gateway-policies.yaml --namespace istio-system \\
      --labels app=istio-ingressgateway --token-file extauthz/samples/demo.jwt /api/v1/products/0
  # a sidecar, with headers, the peer's identity and a machine-readable answer
  extauthz check --config policies/ --namespace foo --labels app=httpbin --method POST \\
      --header 'x-team: dev' --principal spiffe://cluster.local/ns/bar/sa/client --json /post
"""


def add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="decide one request offline and explain the decision",
        description="Decide one request as `serve` would, without Envoy, and explain why.",
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="PATH",
        help="Istio YAML file or directory (repeatable)",
    )
    check.add_argument("--namespace", default="default", help="namespace of the workload")
    check.add_argument("--labels", default="", help="labels of the workload: k=v[,k=v]")
    check.add_argument(
        "--root-namespace",
        default=DEFAULT_ROOT_NAMESPACE,
        help="Istio's root namespace (default: istio-system)",
    )
    check.add_argument("--method", default="GET", help="HTTP method (default: GET)")
    check.add_argument("--host", default="", help=f"host / :authority (default: {DEFAULT_HOST})")
    check.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (repeatable)",
    )
    token = check.add_mutually_exclusive_group()
    token.add_argument("--token", default="", help="a JWT, sent as Authorization: Bearer")
    token.add_argument("--token-file", metavar="FILE", help="read the JWT from FILE")
    check.add_argument("--source-ip", default="", metavar="IP", help="Envoy's direct peer")
    check.add_argument(
        "--remote-ip",
        default="",
        metavar="IP",
        help="the client trusted proxies reported (remote.ip; default: the source ip, as "
        "Envoy without trusted hops)",
    )
    check.add_argument("--port", type=_port, default=0, metavar="N", help="destination port")
    check.add_argument(
        "--principal",
        default="",
        metavar="SPIFFE_URI",
        help="the peer certificate's identity, spiffe://td/ns/NS/sa/SA",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("path", metavar="PATH", help="request path, with a query if any")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    return int(text)


def _workload(namespace: str, labels: str) -> Workload:
    try:
        return Workload(namespace, parse_labels(labels))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run_check(args: argparse.Namespace) -> int:
    token = args.token
    if args.token_file:
        token = read_file(Path(args.token_file)).decode("utf-8", "replace").strip()
    attrs = request_attributes(
        args.path,
        method=args.method,
        host=args.host,
        headers=[parse_header(h) for h in args.header],
        token=token,
        source_ip=args.source_ip,
        remote_ip=args.remote_ip,
        port=args.port,
        principal=args.principal,
    )
    workload = _workload(args.namespace, args.labels)
    snapshot = load_snapshot(args.config, workload, args.root_namespace)
    store = fetch_remote_keys(snapshot.jwks_sources)
    decision = decide(attrs, snapshot, store.keys, int(time.time()))
    report = explain(attrs, snapshot, decision, store)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_ALLOWED if decision.verdict is Verdict.ALLOW else EXIT_DENIED


def _jwt_summary(attrs: RequestAttributes, snapshot: Snapshot, summary: DecisionSummary) -> str:
    status = summary.jwt_status
    if status is not JwtStatus.Ok:
        facts = (("iss", summary.issuer), ("sub", summary.subject), ("kid", summary.kid))
        known = ", ".join(f"{name} {value}" for name, value in facts if value)
        return f"{status.name}: {status.message}" + (f" ({known})" if known else "")
    if summary.principal:
        return f"Ok: verified, request principal {summary.principal}"
    if not snapshot.providers.providers:
        return "Ok: no RequestAuthentication applies, so tokens are not looked at"
    if is_cors_preflight(attrs):
        return "Ok: a CORS preflight skips JWT checks (no identity)"
    return "Ok: no token at the locations of the jwtRules that apply (no identity)"


def explain(
    attrs: RequestAttributes, snapshot: Snapshot, decision: Decision, store: KeyStore
) -> dict[str, Any]:
    """Everything `check` knows about a decision, as plain JSON values: what the decision
    said and the response made of it, as `serve` would send them."""
    response = response_facts(decision)
    summary = response.summary
    return {
        "verdict": summary.verdict.value,
        "status": summary.status,
        "body": response.body,
        "reason": summary.reason,
        "response_headers": dict(response.response_headers),
        "request": {
            "method": attrs.method,
            "host": attrs.host,
            "path": attrs.path,
            "query": attrs.query,
        },
        "workload": {
            "namespace": snapshot.workload.namespace,
            "labels": dict(snapshot.workload.labels),
            "root_namespace": snapshot.root_namespace,
        },
        "applied": list(snapshot.applied),
        "jwt": {
            "status": summary.jwt_status.name,
            "message": summary.jwt_status.message,
            "summary": _jwt_summary(attrs, snapshot, summary),
            "principal": summary.principal,
            "issuer": summary.issuer,
            "subject": summary.subject,
            "kid": summary.kid,
        },
        "policy": summary.policy,
        "rule": summary.rule,
        "detail": summary.detail,
        "audits": list(summary.audits),
        "dry_run": list(summary.dry_run),
        "upstream": {
            "headers_to_remove": list(response.headers_to_remove),
            "headers_to_set": dict(response.headers_to_set),
            "params_to_remove": list(response.params_to_remove),
        }
        if summary.verdict is Verdict.ALLOW
        else None,
        "jwks": {
            state.uri: {"keys": len(state.keys) if state.keys else 0, "error": state.last_error}
            for state in store.states()
        },
    }


_SHOWN_WHEN_PRESENT = ("response", "upstream", "jwks")


def render(report: Mapping[str, Any]) -> str:
    """The report as aligned `name  value` lines, the verdict first."""
    request, workload = report["request"], report["workload"]
    query = f"?{request['query']}" if request["query"] else ""
    labels = ",".join(f"{k}={v}" for k, v in sorted(workload["labels"].items()))
    rule = f" rules[{report['rule']}]" if report["rule"] is not None else ""
    upstream = report["upstream"] or {}
    lines: list[tuple[str, Sequence[str] | str]] = [
        ("verdict", f"{report['verdict'].upper()} {report['status']}"),
        ("request", f"{request['method']} {request['host']}{request['path']}{query}"),
        ("workload", f"{workload['namespace']} {{{labels}}} (root {workload['root_namespace']})"),
        ("applied", report["applied"] or ["nothing applies to this workload"]),
        ("jwt", report["jwt"]["summary"]),
        ("reason", report["reason"]),
        ("policy", f"{report['policy']}{rule}"),
        ("detail", report["detail"]),
        ("audit", report["audits"]),
        ("dry-run", report["dry_run"]),
        ("body", report["body"]),
        ("response", [f"{k}: {v}" for k, v in report["response_headers"].items()]),
        (
            "upstream",
            [f"remove header {h}" for h in upstream.get("headers_to_remove", ())]
            + [f"set header {k}: {v}" for k, v in upstream.get("headers_to_set", {}).items()]
            + [f"remove param {p}" for p in upstream.get("params_to_remove", ())],
        ),
        (
            "jwks",
            [
                f"{uri}: {s['keys']} keys" + (f" ({s['error']})" if s["error"] else "")
                for uri, s in report["jwks"].items()
            ],
        ),
    ]
    out = []
    for name, value in lines:
        values = [value] if isinstance(value, str) else list(value)
        if not values and name in _SHOWN_WHEN_PRESENT:
            continue
        for index, text in enumerate(values or ["-"]):
            out.append(f"{name if index == 0 else '':<10}{text or '-'}")
    return "\n".join(out)

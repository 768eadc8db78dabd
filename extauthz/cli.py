"""Command line: `extauthz serve | validate | envoy-config | demo | check | token | jwks | test`.

Errors are one line, not a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from extauthz import __version__
from extauthz.authn.jwks_fetcher import DEFAULT_REFETCH_MIN_SECONDS, DEFAULT_REFRESH_SECONDS
from extauthz.authn.key_store import DEFAULT_MAX_STALE_SECONDS
from extauthz.commands import Handler, add_commands
from extauthz.commands.envoy_config import add_envoy_config_flags
from extauthz.config.limits import ConfigLimits
from extauthz.config.parse import ConfigError
from extauthz.server.connections import ConnectionLimits
from extauthz.server.logs import MODES

if TYPE_CHECKING:
    from extauthz.server.app import GrpcTls

SERVE_EXAMPLES = """
examples:
  # sidecar: protect the httpbin workload in namespace foo
  extauthz serve --config policies/ --namespace foo --labels app=httpbin \\
      --grpc-addr 127.0.0.1:9000 --http-addr 127.0.0.1:9090
  # gateway: the workload is the ingress gateway in the root namespace
  extauthz serve --config gateway-policies.yaml --namespace istio-system \\
      --labels app=istio-ingressgateway
"""


def _add_workload_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace", default="default", help="namespace of the protected workload"
    )
    parser.add_argument("--labels", default="", help="labels of the workload: k=v[,k=v]")
    parser.add_argument(
        "--root-namespace",
        default="istio-system",
        help="Istio's root namespace (mesh-wide policies)",
    )


def _add_config_limit_flags(parser: argparse.ArgumentParser) -> None:
    """What a configuration may hold (config/limits.py), for `serve` and `validate` alike."""
    defaults = ConfigLimits()
    parser.add_argument(
        "--allow-empty-config",
        action="store_true",
        help="accept a configuration without any RequestAuthentication or AuthorizationPolicy "
        "(it allows every request); without it, such a configuration is an error",
    )
    parser.add_argument(
        "--refuse-crit",
        action="store_true",
        help="reject tokens whose header has `crit` (RFC 7515); Envoy, and extauthz by "
        "default, ignore it",
    )
    parser.add_argument(
        "--strict-keys",
        action="store_true",
        help="refuse weak keys (RSA under 2048 bits, HMAC secrets shorter than their hash) "
        "instead of warning about them",
    )
    for flag, kind, metavar, default, bounds in (
        ("--max-config-bytes", int, "BYTES", defaults.max_bytes,
         "size of all configuration files together"),
        ("--max-config-documents", int, "N", defaults.max_documents,
         "YAML documents in all files together"),
        ("--max-config-depth", int, "N", defaults.max_depth, "nesting of YAML collections"),
        ("--max-config-nodes", int, "N", defaults.max_nodes,
         "YAML values (scalars, lists, mappings) in all files together"),
        ("--max-jwks-keys", int, "N", defaults.max_jwks_keys,
         "keys in one key set, inline or fetched"),
        ("--config-load-timeout", float, "SECONDS", defaults.load_timeout_seconds,
         "reading, parsing and compiling the configuration; a reload that takes longer is "
         "rejected"),
    ):  # fmt: skip
        _add_limit_flag(parser, flag, kind, metavar, default, bounds)


def _add_limit_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: type[int] | type[float],
    metavar: str,
    default: float,
    bounds: str,
) -> None:
    shown = default if kind is int else format(default, "g")
    parser.add_argument(
        flag, type=kind, default=default, metavar=metavar, help=f"{bounds} (default {shown})"
    )


def config_limits(args: argparse.Namespace) -> ConfigLimits:
    return ConfigLimits(
        max_bytes=args.max_config_bytes,
        max_documents=args.max_config_documents,
        max_depth=args.max_config_depth,
        max_nodes=args.max_config_nodes,
        max_jwks_keys=args.max_jwks_keys,
        strict_keys=args.strict_keys,
        refuse_crit=args.refuse_crit,
        allow_empty=args.allow_empty_config,
        load_timeout_seconds=args.config_load_timeout,
    )


def _add_connection_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Bounds on connections to both ports (connections.py); each flag is a field there."""
    defaults = ConnectionLimits()
    for flag, kind, metavar, default, bounds in (
        ("--grpc-max-connections", int, "N", defaults.grpc_max_connections,
         "gRPC connections held at once, handshakes included; more are closed at once (0: no cap)"),
        ("--grpc-max-connection-idle", float, "SECONDS", defaults.grpc_max_connection_idle_seconds,
         "close a gRPC connection without RPCs for this long with GOAWAY; Envoy reconnects "
         "(0: never)"),
        ("--grpc-keepalive-time", float, "SECONDS", defaults.grpc_keepalive_time_seconds,
         "ping a gRPC connection quiet for this long"),
        ("--grpc-keepalive-timeout", float, "SECONDS", defaults.grpc_keepalive_timeout_seconds,
         "close a gRPC connection that leaves a ping unanswered this long"),
        ("--grpc-handshake-timeout", float, "SECONDS", defaults.grpc_handshake_timeout_seconds,
         "close a gRPC connection that has not sent its HTTP/2 preface and SETTINGS by then"),
        ("--grpc-min-client-ping-interval", float, "SECONDS",
         defaults.grpc_min_client_ping_interval_seconds,
         "accept client keepalive pings (Envoy's connection_keepalive) this often; more "
         "often earns GOAWAY too_many_pings"),
        ("--admin-header-timeout", float, "SECONDS", defaults.admin_header_timeout_seconds,
         "close an admin connection without a complete request head this long after connecting "
         "or after its last response (idle keep-alive included); also bounds draining a body"),
        ("--admin-max-connections", int, "N", defaults.admin_max_connections,
         "admin connections held at once; a new one replaces the oldest that has not sent a "
         "request head, else it is closed at once (0: no cap)"),
    ):  # fmt: skip
        _add_limit_flag(parser, flag, kind, metavar, default, bounds)


def connection_limits(args: argparse.Namespace) -> ConnectionLimits:
    """Raises ValueError for a negative limit, or a zero one that may not be off."""
    return ConnectionLimits(
        grpc_max_connections=args.grpc_max_connections,
        grpc_max_connection_idle_seconds=args.grpc_max_connection_idle,
        grpc_keepalive_time_seconds=args.grpc_keepalive_time,
        grpc_keepalive_timeout_seconds=args.grpc_keepalive_timeout,
        grpc_handshake_timeout_seconds=args.grpc_handshake_timeout,
        grpc_min_client_ping_interval_seconds=args.grpc_min_client_ping_interval,
        admin_header_timeout_seconds=args.admin_header_timeout,
        admin_max_connections=args.admin_max_connections,
    )


ENV_PREFIX = "EXTAUTHZ_"
_TRUE = ("1", "true", "yes", "on")


def _defaults_from_environment(parser: argparse.ArgumentParser) -> None:
    """Every `--some-flag` may come from EXTAUTHZ_SOME_FLAG; a flag on the command line wins.
    EXTAUTHZ_CONFIG may list several paths separated by commas."""
    for action in parser._actions:
        flag = next((o for o in action.option_strings if o.startswith("--")), None)
        if flag is None or action.dest == "help":
            continue
        value = os.environ.get(ENV_PREFIX + flag[2:].upper().replace("-", "_"))
        if value is None:
            continue
        if action.dest == "config":
            action.default = [part for part in value.split(",") if part]
            action.required = False
        elif isinstance(action, argparse._StoreTrueAction):
            action.default = value.strip().lower() in _TRUE
        else:
            action.default = action.type(value) if callable(action.type) else value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extauthz",
        description="Envoy ext_authz service enforcing Istio RequestAuthentication and "
        "AuthorizationPolicy YAML.",
    )
    parser.add_argument("--version", action="version", version=f"extauthz {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the ext_authz gRPC service",
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="PATH",
        help="Istio YAML file or directory of *.yaml/*.yml (repeatable)",
    )
    serve.add_argument(
        "--grpc-addr", default="0.0.0.0:9000", help="HOST:PORT for Check and gRPC health"
    )
    serve.add_argument(
        "--http-addr", default="0.0.0.0:9090", help="HOST:PORT for /healthz /readyz /metrics"
    )
    serve.add_argument(
        "--jwks-refresh",
        type=float,
        default=DEFAULT_REFRESH_SECONDS,
        metavar="SECONDS",
        help="how often every jwksUri is refetched (default: Istio's 1200)",
    )
    serve.add_argument(
        "--jwks-refetch-interval",
        type=float,
        default=DEFAULT_REFETCH_MIN_SECONDS,
        metavar="SECONDS",
        help="at most one refetch per URI in this time for unknown-kid tokens (default: 30)",
    )
    serve.add_argument(
        "--jwks-max-stale",
        type=float,
        default=DEFAULT_MAX_STALE_SECONDS,
        metavar="SECONDS",
        help="stop using keys not refreshed for this long; their tokens then fail (default: 86400)",
    )
    serve.add_argument(
        "--grpc-tls-cert",
        metavar="PEM",
        help="serve Check over TLS with this certificate chain (with --grpc-tls-key)",
    )
    serve.add_argument("--grpc-tls-key", metavar="PEM", help="the private key of --grpc-tls-cert")
    serve.add_argument(
        "--grpc-client-ca",
        metavar="PEM",
        help="require client certificates signed by these CAs on the Check port (Envoy's "
        "extauthz cluster presents one); needs --grpc-tls-cert",
    )
    serve.add_argument(
        "--jwks-ca-file",
        default=None,
        metavar="PEM",
        help="extra CA bundle for https jwksUri, added to the system CAs",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve the same ports from N processes (SO_REUSEPORT); metrics add up (default 1)",
    )
    serve.add_argument(
        "--watch-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often config files are checked for changes; 0 turns watching off (SIGHUP "
        "still reloads)",
    )
    serve.add_argument(
        "--decision-log",
        choices=MODES,
        default="denials",
        help="which decisions are logged as JSON lines on stderr: every one, the denials "
        "(401, 403: the default), or none",
    )
    serve.add_argument(
        "--decision-log-sample",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="with --decision-log all: the fraction of allowed requests logged (denials always)",
    )
    serve.add_argument(
        "--payload-metadata",
        action="store_true",
        help="put each verified token's payload in the dynamic metadata (jwt_payload, by "
        "issuer) for Envoy's access log; off by default, as it costs every new token time",
    )
    serve.add_argument(
        "--log-claims",
        default="",
        metavar="CLAIM[,CLAIM]",
        help="claims of verified tokens copied into decision lines (default: none)",
    )
    serve.add_argument(
        "--xff-num-trusted-hops",
        type=int,
        default=0,
        metavar="N",
        help="Envoy's xff_num_trusted_hops: which x-forwarded-for entry is remote.ip (default 0)",
    )
    _add_workload_flags(serve)
    _add_config_limit_flags(serve)
    _add_connection_limit_flags(serve)
    _defaults_from_environment(serve)

    validate = commands.add_parser("validate", help="check Istio YAML the way `serve` loads it")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument(
        "--namespace", default="default", help="namespace for resources that name none"
    )
    validate.add_argument("--root-namespace", default="istio-system", help="Istio's root namespace")
    _add_config_limit_flags(validate)

    native = commands.add_parser(
        "envoy-config",
        help="print the policies as Envoy's own jwt_authn and RBAC filters (no extauthz needed)",
        description="The filters istiod would generate for the workload, for a standard Envoy.",
    )
    _add_workload_flags(native)
    _add_config_limit_flags(native)
    add_envoy_config_flags(native)

    demo = commands.add_parser(
        "demo", help="run Envoy + extauthz + upstreams on loopback and show Istio's sample matrix"
    )
    demo.add_argument("--once", action="store_true", help="print the matrix and exit (no serving)")
    parser.set_defaults(more_handlers=add_commands(commands))  # check, token, jwks, test
    return parser


def _grpc_tls(args: argparse.Namespace) -> GrpcTls | None:
    """--grpc-tls-cert/--grpc-tls-key/--grpc-client-ca as settings; ValueError when they do
    not go together."""
    from extauthz.server.app import GrpcTls

    if not (args.grpc_tls_cert or args.grpc_tls_key or args.grpc_client_ca):
        return None
    if not (args.grpc_tls_cert and args.grpc_tls_key):
        raise ValueError("--grpc-tls-cert and --grpc-tls-key go together")
    return GrpcTls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_client_ca)


def _serve(args: argparse.Namespace) -> int:
    from extauthz.config.workload import Workload, parse_labels
    from extauthz.server.app import Settings, run_event_loop, serve, split_addr
    from extauthz.server.logs import DecisionLogSettings, install_line_handler

    try:
        split_addr(args.grpc_addr)
        split_addr(args.http_addr)
        workload = Workload(args.namespace, parse_labels(args.labels))
        limits = connection_limits(args)
        grpc_tls = _grpc_tls(args)
    except ValueError as exc:
        print(f"extauthz: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        config_paths=tuple(args.config),
        grpc_addr=args.grpc_addr,
        http_addr=args.http_addr,
        grpc_tls=grpc_tls,
        payload_metadata=args.payload_metadata,
        workload=workload,
        root_namespace=args.root_namespace,
        jwks_refresh_seconds=args.jwks_refresh,
        jwks_refetch_min_seconds=args.jwks_refetch_interval,
        jwks_max_stale_seconds=args.jwks_max_stale,
        jwks_ca_file=args.jwks_ca_file,
        xff_num_trusted_hops=args.xff_num_trusted_hops,
        watch_interval_seconds=args.watch_interval,
        reuse_port="PROMETHEUS_MULTIPROC_DIR" in os.environ or args.workers > 1,
        config_limits=config_limits(args),
        connection_limits=limits,
        decision_log=DecisionLogSettings(
            args.decision_log,
            args.decision_log_sample,
            tuple(c.strip() for c in args.log_claims.split(",") if c.strip()),
        ),
    )
    if args.workers > 1:
        from extauthz.server.workers import run_workers

        return run_workers(_RAW_ARGV, args.workers)
    if args.decision_log != "none":
        install_line_handler(sys.stderr)  # bare JSON lines, beside the service's own log
    try:
        run_event_loop(serve(settings))
    except ConfigError as exc:
        print(f"extauthz: invalid configuration: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"extauthz: {exc}", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    from extauthz.config.lint import locate, warnings
    from extauthz.config.parse import load_config
    from extauthz.snapshot.compile import compile_generation

    try:
        config = load_config(args.paths, args.namespace, config_limits(args))
        compile_generation(config, args.root_namespace)
    except ConfigError as exc:
        line = locate(exc)
        message = str(exc)
        if exc.origin is not None and line:
            # file:line first, as compilers and editors expect; then the rest of the message.
            message = message.replace(f"{exc.origin}: ", "", 1)
            message = f"{exc.origin.file}:{line}: error: document {exc.origin.document}: {message}"
        else:
            message = f"error: {message}"
        print(message, file=sys.stderr)
        return 1
    for warning in warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"ok: {len(config.request_authentications)} RequestAuthentication, "
        f"{len(config.authorization_policies)} AuthorizationPolicy"
    )
    return 0


def _envoy_config(args: argparse.Namespace) -> int:
    from extauthz.commands.envoy_config import check_addresses, run_envoy_config
    from extauthz.config.workload import Workload, parse_labels

    try:
        workload = Workload(args.namespace, parse_labels(args.labels))
        check_addresses(args)
    except ValueError as exc:
        print(f"extauthz: {exc}", file=sys.stderr)
        return 2
    try:
        return run_envoy_config(args, workload, config_limits(args))
    except ConfigError as exc:
        print(f"extauthz: invalid configuration: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"extauthz: {exc}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from extauthz.rig.demo import run_demo

    return run_demo(keep_serving=not args.once)


_RAW_ARGV: list[str] = []


def main(argv: Sequence[str] | None = None) -> int:
    _RAW_ARGV[:] = list(argv if argv is not None else sys.argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers: dict[str, Handler] = {
        "serve": _serve,
        "validate": _validate,
        "envoy-config": _envoy_config,
        "demo": _demo,
    }
    handlers.update(args.more_handlers)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130

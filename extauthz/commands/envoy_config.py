"""`extauthz envoy-config`: the policies one workload gets, as Envoy's own jwt_authn and RBAC
filters (extauthz.native), printed as YAML. The workload is chosen exactly as `serve` chooses
it; remote keys are fetched here, once, unless Envoy is to fetch them (`--jwks remote`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from extauthz.authn.jwks_fetcher import FetchError, JwksFetcher
from extauthz.authn.key_store import KeyStore
from extauthz.authn.providers import DEFAULT_JWKS_TIMEOUT_SECONDS, OIDC_DISCOVERY_PATH, JwksSource
from extauthz.config.limits import ConfigLimits
from extauthz.config.parse import load_config
from extauthz.config.resources import JWTRule
from extauthz.config.workload import Workload, applies_to
from extauthz.native.bootstrap import bootstrap, native_config
from extauthz.snapshot.compile import compile_generation

FORMATS = ("filters", "bootstrap")
JWKS_MODES = ("inline", "remote")


def host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def add_envoy_config_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of envoy-config beyond the workload and configuration-limit ones."""
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="PATH",
        help="Istio YAML file or directory of *.yaml/*.yml (repeatable)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="filters",
        help="filters: http_filters and clusters to splice into your own "
        "HttpConnectionManager; bootstrap: a runnable Envoy bootstrap",
    )
    parser.add_argument(
        "--jwks",
        choices=JWKS_MODES,
        default="inline",
        help="inline: fetch every jwksUri now and inline the keys (istiod's "
        "default); remote: Envoy fetches each jwksUri through its own cluster",
    )
    parser.add_argument(
        "--listen",
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="bootstrap: the listener's address (default 0.0.0.0:8080)",
    )
    parser.add_argument(
        "--upstream",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="bootstrap: where allowed requests go (default 127.0.0.1:8000)",
    )
    parser.add_argument(
        "--admin",
        default="",
        metavar="HOST:PORT",
        help="bootstrap: Envoy's admin address (default: no admin listener)",
    )
    parser.add_argument(
        "--jwks-ca-file",
        default=None,
        metavar="FILE",
        help="CA bundle for fetching https jwksUris now (default: system CAs)",
    )
    parser.add_argument("--output", "-o", default="-", metavar="FILE",
                        help="write the YAML to FILE (default: standard output)")  # fmt: skip


def jwks_source(rule: JWTRule) -> JwksSource:
    """Where a rule without inline keys gets them: its jwksUri, or OIDC discovery."""
    timeout = rule.timeout_seconds or DEFAULT_JWKS_TIMEOUT_SECONDS
    if rule.jwks_uri:
        return JwksSource(rule.jwks_uri, timeout)
    return JwksSource(rule.issuer.rstrip("/") + OIDC_DISCOVERY_PATH, timeout, is_discovery=True)


async def _fetch_all(
    sources: Iterable[JwksSource], limits: ConfigLimits, ca_file: str | None
) -> dict[JwksSource, str | FetchError]:
    fetcher = JwksFetcher(
        KeyStore(), ca_file=ca_file, max_keys=limits.max_jwks_keys, strict_keys=limits.strict_keys
    )

    async def one(source: JwksSource) -> str | FetchError:
        try:
            text, _, _ = await asyncio.wait_for(fetcher.download(source), source.timeout_seconds)
            fetcher.parse(text)  # the keys must be usable; Envoy is handed the text as served
            return text
        except FetchError as exc:
            return exc
        except TimeoutError:
            return FetchError("timeout", f"no answer within {source.timeout_seconds:g}s")

    try:
        unique = list(dict.fromkeys(sources))
        results = await asyncio.gather(*(one(source) for source in unique))
        return dict(zip(unique, results, strict=True))
    finally:
        await fetcher.close()


def run_envoy_config(args: argparse.Namespace, workload: Workload, limits: ConfigLimits) -> int:
    """Exit 1 for a configuration `serve` would refuse; 0 otherwise, warnings on stderr."""
    config = load_config(args.config, workload.namespace, limits)
    compile_generation(config, args.root_namespace)  # the same validation as `serve`
    root = args.root_namespace
    authns = [a for a in config.request_authentications if applies_to(a, workload, root)]
    policies = [p for p in config.authorization_policies if applies_to(p, workload, root)]
    remote = args.jwks == "remote"
    needed = [
        jwks_source(rule)
        for authn in authns
        for rule in authn.jwt_rules
        if not rule.jwks and not (remote and rule.jwks_uri)
    ]
    fetched = asyncio.run(_fetch_all(needed, limits, args.jwks_ca_file)) if needed else {}
    problems: list[str] = []

    def resolve(rule: JWTRule) -> str | None:
        result = fetched[jwks_source(rule)]
        if isinstance(result, FetchError):
            problems.append(f"{jwks_source(rule).uri}: {result}")
            return None
        return result

    native = native_config(authns, policies, resolve, remote_jwks=remote)
    if limits.refuse_crit:
        problems.append("--refuse-crit has no Envoy equivalent: Envoy accepts tokens with `crit`")
    for line in (*problems, *native.warnings):
        print(f"extauthz envoy-config: warning: {line}", file=sys.stderr)
    if args.format == "bootstrap":
        admin = host_port(args.admin) if args.admin else None
        document = bootstrap(native, host_port(args.listen), host_port(args.upstream), admin)
    else:
        document = native.filters_document()
    _write(to_yaml(document), args.output)
    return 0


# Plain scalars some YAML readers take for booleans (YAML 1.1, as Envoy's reader does);
# PyYAML quotes true/false/yes/no/on/off itself, but not these.
_BOOLISH = frozenset({"y", "Y", "n", "N"})


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full (no `&id001` anchors for a user to untangle) and
    quotes strings a YAML 1.1 reader would take for booleans (a claim named `n`)."""

    def ignore_aliases(self, data: object) -> bool:
        return True

    def represent_str(self, data: str) -> yaml.ScalarNode:
        if data in _BOOLISH:
            return self.represent_scalar("tag:yaml.org,2002:str", data, style="'")
        return super().represent_str(data)


_PlainDumper.add_representer(str, _PlainDumper.represent_str)


def to_yaml(document: object) -> str:
    return yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=100)


def check_addresses(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) before any work: every address must parse."""
    for text in (args.listen, args.upstream, *([args.admin] if args.admin else [])):
        host_port(text)


def _write(text: str, output: str) -> None:
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)

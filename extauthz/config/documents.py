"""Configuration files into YAML documents, within bounds.

Which files a `--config` path names (a file, or a directory's *.yaml/*.yml, Kubernetes
ConfigMap mounts included), and their YAML read with limits on size, documents, nesting
and time. Aliases are refused outright: Istio resources never need them, and they are how
a 26 KB file expands into gigabytes (the "billion laughs").

The bounds are checked on the YAML's parse events before anything is built, with libyaml
where PyYAML has it.

Everything that could make a configuration silently smaller is an error here: a path or a
directory entry that cannot be read, a dangling or looping symbolic link, a file without
any document.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from extauthz.config.limits import ConfigLimits
from extauthz.config.resources import Origin

YAML_SUFFIXES = (".yaml", ".yml")
# How many YAML values are walked between two looks at the clock.
_NODES_PER_CLOCK_CHECK = 512


class ConfigError(ValueError):
    """A configuration the service refuses to load; str() is one line for humans. Where it
    is known, the place: file, 1-based YAML document and field path (for `locate`)."""

    def __init__(self, message: str, origin: Origin | None = None, field_path: str = "") -> None:
        super().__init__(message)
        self.origin = origin
        self.field_path = field_path


def _is_broken_link(path: Path) -> bool:
    """A symbolic link whose target is missing, or that loops."""
    if not path.is_symlink():
        return False
    try:
        path.stat()
    except OSError:  # FileNotFoundError when dangling, ELOOP when it loops
        return True
    return False


def _directory_files(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot list: {exc.strerror or exc}") from exc
    files = []
    for entry in entries:
        # Hidden entries are skipped, so a ConfigMap mount (whose files live in `..data/`,
        # reached through symlinks) is read once.
        if entry.suffix not in YAML_SUFFIXES or entry.name.startswith("."):
            continue
        if _is_broken_link(entry):
            raise ConfigError(
                f"{entry}: broken symbolic link (its target is missing or it loops); a "
                "configuration file that cannot be read is an error, not an absent file"
            )
        if entry.is_file():
            files.append(entry)
    return files


def config_files(paths: Iterable[str | Path], allow_empty: bool = True) -> list[Path]:
    """The YAML files named by `paths`: files as given, directories' *.yaml/*.yml, sorted.

    A directory without any such file is an error unless `allow_empty`: a mount that lost
    its files must not read as a configuration without policies.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _directory_files(path)
            if not found and not allow_empty:
                raise ConfigError(
                    f"{path}: no *.yaml or *.yml file in this directory "
                    "(start with --allow-empty-config to serve without any policy)"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif _is_broken_link(path):
            raise ConfigError(f"{path}: broken symbolic link (its target is missing or it loops)")
        else:
            raise ConfigError(f"{path}: no such file or directory")
    return files


@dataclass(slots=True)
class Budget:
    """What a whole load may still spend: bytes, documents and time, across its files."""

    limits: ConfigLimits
    deadline: float  # time.monotonic() value
    bytes_read: int = 0
    documents: int = 0
    nodes: int = 0
    digest: Any = field(default_factory=hashlib.sha256)  # of every file's name and bytes

    @classmethod
    def starting_now(cls, limits: ConfigLimits) -> Budget:
        return cls(limits, time.monotonic() + limits.load_timeout_seconds)

    def check_time(self, file: str) -> None:
        if time.monotonic() > self.deadline:
            raise ConfigError(
                f"{file}: loading took longer than {self.limits.load_timeout_seconds:g}s "
                "(--config-load-timeout)"
            )


def read_file(path: Path, budget: Budget) -> str:
    """The text of one file, counted against the budget's bytes (read no further)."""
    room = budget.limits.max_bytes - budget.bytes_read
    try:
        with path.open("rb") as stream:
            raw = stream.read(room + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > room:
        raise ConfigError(
            f"{path}: the configuration is larger than {budget.limits.max_bytes} bytes "
            "(--max-config-bytes)"
        )
    budget.bytes_read += len(raw)
    budget.digest.update(str(path).encode() + b"\0" + raw + b"\0")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 ({exc.reason})") from exc


# libyaml's parser and loader when PyYAML was built with them (its Linux wheels are), else
# the pure-Python ones: the same results, 10x slower.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _refuse(file: str, event: Any, message: str) -> ConfigError:
    line = event.start_mark.line + 1 if event.start_mark else 0
    return ConfigError(f"{file}:{line}: {message}")


def _check_events(text: str, file: str, budget: Budget) -> None:
    """Walk the YAML's parse events (cheap: no objects are built) and refuse what would
    cost too much to build: aliases, nesting, documents and nodes past the limits, time."""
    limits = budget.limits
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.AliasEvent):
                raise _refuse(
                    file,
                    event,
                    f"YAML alias *{event.anchor} is not accepted (Istio resources never need "
                    "aliases, and they can expand a small file without bound)",
                )
            budget.nodes += 1
            if budget.nodes > limits.max_nodes:
                raise _refuse(
                    file,
                    event,
                    f"more than {limits.max_nodes} YAML values in the configuration "
                    "(--max-config-nodes)",
                )
            if budget.nodes % _NODES_PER_CLOCK_CHECK == 0:
                budget.check_time(file)
            if isinstance(event, _OPENS):
                depth += 1
                if depth > limits.max_depth:
                    raise _refuse(
                        file,
                        event,
                        f"YAML nested deeper than {limits.max_depth} levels (--max-config-depth)",
                    )
        elif isinstance(event, _CLOSES):
            depth -= 1
        elif isinstance(event, yaml.DocumentStartEvent):
            budget.documents += 1
            if budget.documents > limits.max_documents:
                raise _refuse(
                    file,
                    event,
                    f"more than {limits.max_documents} YAML documents in the configuration "
                    "(--max-config-documents)",
                )


def read_documents(text: str, file: str, budget: Budget) -> list[tuple[int, Any]]:
    """(1-based index, value) of every YAML document in `text`, empty ones included (as
    None). Raises ConfigError, one line naming the file, for malformed YAML or a bound
    passed: aliases, nesting, documents, values, time. The bounds are checked on the parse
    events first, so nothing past them is ever built."""
    try:
        _check_events(text, file, budget)
        values = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}".replace("\n", " ")) from exc
    except RecursionError as exc:  # belt and braces: the depth bound comes first
        raise ConfigError(f"{file}: YAML nested too deeply to read") from exc
    budget.check_time(file)
    return list(enumerate(values, start=1))

"""Records (extauthz/records.py) are frozen for the type checker and hash like frozen
dataclasses at run time: the caches share them between requests and key dicts by them."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import extauthz
from extauthz.attributes import RequestAttributes
from extauthz.authn.result import AuthnResult, Validity
from extauthz.authn.status import JwtStatus


def _record_classes() -> list[type]:
    """Every class in extauthz made by @record (a slotted dataclass with a frozen one's hash
    that is not frozen at run time)."""
    found = []
    for module_info in pkgutil.walk_packages(extauthz.__path__, "extauthz."):
        if module_info.name == "extauthz.__main__":  # runs the CLI when imported
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and dataclasses.is_dataclass(value)
                and value.__dataclass_params__.unsafe_hash  # type: ignore[attr-defined]
                and not value.__dataclass_params__.frozen  # type: ignore[attr-defined]
            ):
                found.append(value)
    return found


def test_the_per_request_values_are_records() -> None:
    names = {cls.__name__ for cls in _record_classes()}
    assert {"RequestAttributes", "Jwt", "AuthnResult", "Decision", "Checked"} <= names


def test_records_compare_and_hash_by_value() -> None:
    one, two = Validity(1.0, 2.0), Validity(1.0, 2.0)
    assert one == two and hash(one) == hash(two) and {one: "x"}[two] == "x"
    assert Validity(1.0, 3.0) != one
    result = AuthnResult(JwtStatus.Ok, principal="a/b")
    assert dataclasses.replace(result, principal="c/d").principal == "c/d"
    assert result.principal == "a/b"
    assert not hasattr(RequestAttributes(), "__dict__")  # slotted: no stray attributes


def test_mypy_refuses_to_assign_any_records_field(tmp_path: Path) -> None:
    """The guard that replaces frozen=True: `make lint` (strict mypy) fails on any
    assignment to a record's field, for every record in the package."""
    classes = _record_classes()
    lines = ["from typing import Any"]
    for index, cls in enumerate(classes):
        field = dataclasses.fields(cls)[0].name
        lines += [
            f"from {cls.__module__} import {cls.__name__} as R{index}",
            f"def f{index}(r: R{index}{'[Any]' if getattr(cls, '__parameters__', ()) else ''}) -> None:",
            f"    r.{field} = r.{field}",
        ]
    snippet = tmp_path / "assign.py"
    snippet.write_text("\n".join(lines) + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    read_only = [line for line in run.stdout.splitlines() if "is read-only" in line]
    assert len(read_only) == len(classes), run.stdout

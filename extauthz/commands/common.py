"""What every command shares: exit codes, one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import jwt as pyjwt

from extauthz.config.parse import ConfigError

Handler = Callable[[argparse.Namespace], int]

EXIT_ALLOWED = 0
EXIT_DENIED = 1  # `check`: denied or unauthenticated; `test`: a case did not get its status
EXIT_USAGE = 2  # a bad flag, file or configuration
DEFAULT_HOST = "localhost"


class UsageError(Exception):
    """A bad flag, file or value; str() is the one line printed before exit code 2."""


def one_line_errors(command: str, handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (UsageError, ConfigError, OSError, pyjwt.PyJWTError) as exc:
            message = " ".join(str(exc).split())
            print(f"extauthz {command}: error: {message}", file=sys.stderr)
            return EXIT_USAGE

    return run


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc

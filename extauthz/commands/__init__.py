"""`extauthz check | token | jwks | test`: offline answers from the pure core `serve` uses.

- check  one request through `decide()`, explained: verdict, status, JWT, policy, rule
- token  mint a test JWT with an RSA, EC, Ed25519 or HMAC key (from a file or generated)
- jwks   the JWKS of a key, ready for a RequestAuthentication's `jwks` field
- test   a YAML file of requests and expected statuses, each run through `decide()`

Nothing here decides anything: requests become RequestAttributes and go through the same
`load_config` -> `compile_generation` -> `snapshot_for` -> `decide` path as a Check. A bad
flag, file or value is one line on stderr and exit code 2.
"""

from __future__ import annotations

from typing import Any

from extauthz.commands.cases import add_test, run_test
from extauthz.commands.check import add_check, run_check
from extauthz.commands.common import Handler, one_line_errors
from extauthz.commands.tokens import add_jwks, add_token, run_jwks, run_token

__all__ = ["Handler", "add_commands"]


def add_commands(commands: Any) -> dict[str, Handler]:
    """Add check, token, jwks and test to the CLI's subparsers; name -> handler."""
    add_check(commands)
    add_token(commands)
    add_jwks(commands)
    add_test(commands)
    handlers = {"check": run_check, "token": run_token, "jwks": run_jwks, "test": run_test}
    return {name: one_line_errors(name, handler) for name, handler in handlers.items()}

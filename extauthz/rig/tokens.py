"""Sample tokens for the demo and the tests, signed with Istio's public sample key."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from extauthz.commands.tokens import load_signing_key
from extauthz.commands.tokens import mint as mint_token
from extauthz.rig.rig import SAMPLES

SAMPLE_ISSUER = "testing@secure.istio.io"


def sample_kid() -> str:
    return str(json.loads((SAMPLES / "jwks.json").read_text())["keys"][0]["kid"])


def mint(
    claims: dict[str, Any], key_file: Path = SAMPLES / "key.pem", kid: str | None = None
) -> str:
    """An RS256 token over `claims`, signed with the sample private key."""
    return mint_token(load_signing_key(key_file, "RS256"), claims, kid or sample_kid())


def tampered(token: str) -> str:
    """The same token with one signature character changed (not the last one, whose low
    bits may be padding)."""
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{payload}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


def invalid_tokens(demo_token: str, now: int | None = None) -> dict[str, tuple[str, str]]:
    """name -> (token, Envoy's response body for it)."""
    now = int(time.time()) if now is None else now
    base = {"iss": SAMPLE_ISSUER, "sub": SAMPLE_ISSUER}
    return {
        "tampered": (tampered(demo_token), "Jwt verification fails"),
        "expired": (mint({**base, "exp": now - 3600}), "Jwt is expired"),
        "unknown-issuer": (
            mint({"iss": "someone-else@example.com", "sub": "x", "exp": now + 3600}),
            "Jwt issuer is not configured",
        ),
    }

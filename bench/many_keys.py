"""CPU one token costs when no key verifies it, as key sets grow (issue 12).

    .venv/bin/python bench/many_keys.py [--tokens N]

Prints a table; asserts nothing. Each row builds one key set with `parse_jwks` and times
`verify_signature` (CPU time, `time.process_time`, over rounds of N tokens for at least half
a second) on tokens whose signature no key in the set matches: what an attacker pays nothing
for and we pay for every time. Sets larger than the default limit are parsed with a raised
`max_keys`, as `--max-jwks-keys` would; the last column says whether the default accepts them.

Keys are a few generated key pairs repeated: a verification costs the same whether or not
two entries share a modulus, and generating 5,000 RSA keys would take minutes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from extauthz.authn import keys as keys_module
from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import JwksError, KeySet, parse_jwks
from extauthz.authn.verify import verify_signature

# The code before issue 12 had no limit: keep measuring it with the same script.
DEFAULT_MAX_KEYS: int | None = getattr(keys_module, "DEFAULT_MAX_KEYS", None)
_HAS_LIMIT = "max_keys" in inspect.signature(parse_jwks).parameters
_DISTINCT_KEYS = 4
MIN_CPU_SECONDS = 0.5


def _rsa_jwks() -> list[dict[str, Any]]:
    privates = [
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for _ in range(_DISTINCT_KEYS)
    ]
    return [json.loads(RSAAlgorithm.to_jwk(p.public_key())) for p in privates]


def _ec_jwks() -> list[dict[str, Any]]:
    privates = [ec.generate_private_key(ec.SECP256R1()) for _ in range(_DISTINCT_KEYS)]
    return [json.loads(ECAlgorithm.to_jwk(p.public_key())) for p in privates]


def _repeat(pool: list[dict[str, Any]], count: int, with_kid: bool) -> list[dict[str, Any]]:
    entries = [dict(pool[i % len(pool)]) for i in range(count)]
    for i, entry in enumerate(entries):
        if with_kid:
            entry["kid"] = f"k{i}"
    return entries


def _parse(entries: list[dict[str, Any]]) -> KeySet:
    text = json.dumps({"keys": entries})
    return parse_jwks(text, max_keys=len(entries)) if _HAS_LIMIT else parse_jwks(text)


def _accepted_by_default(entries: list[dict[str, Any]]) -> str:
    if DEFAULT_MAX_KEYS is None:
        return "yes (no limit)"
    try:
        parse_jwks(json.dumps({"keys": entries}))
    except JwksError:
        return f"no (> {DEFAULT_MAX_KEYS})"
    return "yes"


def _bad_tokens(alg: str, count: int, kid: str | None) -> list[Jwt]:
    """Tokens signed by a key outside every set: each signature is checked and fails."""
    private: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg.startswith("RS")
        else ec.generate_private_key(ec.SECP256R1())
    )
    headers = {"kid": kid} if kid else {}
    tokens = []
    for i in range(count):
        encoded = pyjwt.encode({"sub": f"u{i}"}, private, algorithm=alg, headers=headers)
        parsed = parse_jwt(encoded)
        assert isinstance(parsed, Jwt)
        tokens.append(parsed)
    return tokens


def _cpu_ms_per_token(keys: KeySet, tokens: list[Jwt]) -> tuple[float, str]:
    """CPU per token over whole rounds of `tokens`, for at least MIN_CPU_SECONDS (one round
    at least), so the cheap rows are not lost in the timer's noise."""
    statuses: set[str] = set()
    checked = 0
    start = time.process_time()
    while checked == 0 or time.process_time() - start < MIN_CPU_SECONDS:
        statuses.update(verify_signature(token, keys).name for token in tokens)
        checked += len(tokens)
    elapsed = time.process_time() - start
    return elapsed / checked * 1e3, "/".join(sorted(statuses))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=5, help="tokens per row (default 5)")
    n = parser.parse_args().tokens
    rsa_pool, ec_pool = _rsa_jwks(), _ec_jwks()
    rs256_no_kid = _bad_tokens("RS256", n, None)
    rs256_unknown_kid = _bad_tokens("RS256", n, "not-in-the-set")
    es256_no_kid = _bad_tokens("ES256", n, None)
    cases: list[tuple[str, list[dict[str, Any]], list[Jwt]]] = [
        (
            f"{count} RSA keys without kid, RS256 token without kid",
            _repeat(rsa_pool, count, with_kid=False),
            rs256_no_kid,
        )
        for count in (100, 1000, 5000)
    ]
    cases += [
        (
            "5000 RSA keys with kid, RS256 token with an unknown kid",
            _repeat(rsa_pool, 5000, with_kid=True),
            rs256_unknown_kid,
        ),
        (
            "99 EC keys + 1 RSA key, RS256 token without kid",
            _repeat(ec_pool, 99, with_kid=False) + rsa_pool[:1],
            rs256_no_kid,
        ),
        (
            "5000 RSA keys + 1 EC key, ES256 token without kid",
            _repeat(rsa_pool, 5000, with_kid=False) + ec_pool[:1],
            es256_no_kid,
        ),
        (
            "6500 EC keys without kid, ES256 token without kid",
            _repeat(ec_pool, 6500, with_kid=False),
            es256_no_kid,
        ),
    ]
    width = max(len(name) for name, _, _ in cases)
    print(f"{'case':<{width}}  {'CPU ms/token':>12}  {'status':<20}  default limit accepts")
    for name, entries, tokens in cases:
        keys = _parse(entries)
        ms, status = _cpu_ms_per_token(keys, tokens)
        print(f"{name:<{width}}  {ms:12.3f}  {status:<20}  {_accepted_by_default(entries)}")


if __name__ == "__main__":
    main()

"""What the load generator sends: one scenario = one way of presenting (or not) a token.

`prepare` mints everything once per run into a work directory: the fresh-token pools (one
file per algorithm, for bench/wrk_tokens.lua), the JWKS with both public keys, and the
sample policies rewritten to that JWKS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench import tokens
from extauthz.rig.tokens import tampered

PATH = "/api/v1/products/0"  # not /productpage: the DENY policy is evaluated


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str  # stable id in the JSON
    label: str
    expected: int  # the status under the sample policies (200 without any policy)
    token: str = ""  # the same token on every request ("" = none)
    token_file: Path | None = None  # a pool: a fresh token per request
    probe_token: str = ""  # a token like the pool's, not in it, to check the answer first

    @property
    def is_fresh(self) -> bool:
        return self.token_file is not None

    @property
    def checked_token(self) -> str:
        return self.probe_token if self.is_fresh else self.token


@dataclass(frozen=True, slots=True)
class Material:
    jwks: str  # both public keys, for (b)'s jwt_authn and (d)'s policies
    policies: Path  # gateway-policies.yaml with that JWKS
    scenarios: tuple[Scenario, ...]
    pool_files: tuple[Path, ...]

    def scenario(self, key: str) -> Scenario:
        [found] = [s for s in self.scenarios if s.key == key]
        return found


ALL_SCENARIOS = (
    "rs256-cached",
    "rs256-fresh",
    "es256-cached",
    "es256-fresh",
    "no-token",
    "invalid-token",
    "malformed-fresh",
    "badsig-fresh",
)
QUICK_SCENARIOS = ("rs256-cached", "rs256-fresh", "no-token")


def prepare(
    workdir: Path, keys: tuple[str, ...], pool_size: int = tokens.FRESH_POOL_SIZE
) -> Material:
    rs256 = tokens.sample_rs256_key()
    es256 = tokens.new_es256_key()
    jwks = tokens.jwks_json([rs256, es256])
    policies = tokens.write_gateway_policies(jwks, workdir / "gateway-policies.yaml")
    now = int(time.time())
    demo = tokens.demo_token()
    es256_token = es256.mint(tokens.claims(-1, now))
    pools = {}
    for name, key in (("rs256", rs256), ("es256", es256)):
        wanted = f"{name}-fresh" in keys or (name == "rs256" and "badsig-fresh" in keys)
        if not wanted:
            continue
        minted = tokens.mint_pool(key, pool_size + 1, now)
        pools[name] = (tokens.write_pool(minted[:-1], workdir / f"{name}-pool.txt"), minted[-1])
    flood = {}
    if "badsig-fresh" in keys:
        # Well-formed, unique, each with one signature character changed: a 401 that costs
        # a signature check every time (no cache can know it).
        bad = [tampered(token) for token in pools["rs256"][0].read_text().split()]
        pool = tokens.write_pool(bad, workdir / "badsig-pool.txt")
        flood["badsig"] = (pool, tampered(pools["rs256"][1]))
    if "malformed-fresh" in keys:
        junk = tokens.malformed_pool(pool_size + 1)
        pool = tokens.write_pool(junk[:-1], workdir / "malformed-pool.txt")
        flood["malformed"] = (pool, junk[-1])
    made = {
        "rs256-cached": Scenario("rs256-cached", "RS256, same token", 200, token=demo),
        "es256-cached": Scenario("es256-cached", "ES256, same token", 200, token=es256_token),
        "no-token": Scenario("no-token", "no token", 403),
        "invalid-token": Scenario("invalid-token", "tampered RS256", 401, token=tampered(demo)),
    }
    for name, (pool, probe) in pools.items():
        made[f"{name}-fresh"] = Scenario(
            f"{name}-fresh", f"{name.upper()}, fresh token", 200, token_file=pool, probe_token=probe
        )
    labels = {"badsig": "bad signature, each new", "malformed": "malformed, each new"}
    for name, (pool, probe) in flood.items():
        made[f"{name}-fresh"] = Scenario(
            f"{name}-fresh", labels[name], 401, token_file=pool, probe_token=probe
        )
    return Material(
        jwks=jwks,
        policies=policies,
        scenarios=tuple(made[key] for key in keys),
        pool_files=tuple(pool for pool, _ in (*pools.values(), *flood.values())),
    )

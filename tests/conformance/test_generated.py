"""Generated configurations and requests, each answered by Envoy's own filters and by
extauthz behind ext_authz: every answer must be the same.

`make test` runs a fixed-seed slice; `make conformance` runs it at length. The size comes
from the environment:
- EXTAUTHZ_CONFORMANCE_SEEDS    comma-separated seeds (default: one fixed seed)
- EXTAUTHZ_CONFORMANCE_CONFIGS  configurations per seed (default 40)
- EXTAUTHZ_CONFORMANCE_REQUESTS requests per configuration (default 50)
Every difference is written to a report file whose path the failure names.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
from pathlib import Path

import pytest

from tests.conformance import gen
from tests.conformance.harness import Case, Difference, Pair

DEFAULT_SEED = 20261202
BATCH = 50  # configurations per pair of Envoys (one listener each)


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(f"EXTAUTHZ_CONFORMANCE_{name}", default))


def _seeds() -> list[int]:
    text = os.environ.get("EXTAUTHZ_CONFORMANCE_SEEDS", "")
    return [int(part) for part in text.split(",") if part.strip()] or [DEFAULT_SEED]


def run_seed(seed: int, configs: int, requests: int, workdir: Path) -> tuple[int, list[Difference]]:
    rng = random.Random(seed)
    sent, differences = 0, []
    for start in range(0, configs, BATCH):
        # Each batch is generated just before it is sent: tokens' times stay where meant.
        cases: list[Case] = [
            gen.case(rng, number, requests) for number in range(start, min(start + BATCH, configs))
        ]
        batch_dir = workdir / f"batch-{start // BATCH}"
        batch_dir.mkdir()
        pair = Pair(batch_dir, cases)
        try:
            pair.start()
            count, found = asyncio.run(pair.compare())
        finally:
            pair.stop()
        sent += count
        differences += found
    return sent, differences


@pytest.mark.parametrize("seed", _seeds())
def test_native_envoy_and_extauthz_answer_alike(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs, requests = _setting("CONFIGS", 40), _setting("REQUESTS", 50)
    sent, differences = run_seed(seed, configs, requests, tmp_path)
    with capsys.disabled():
        print(
            f"\nconformance seed {seed}: {configs} configurations, {sent} requests, "
            f"{len(differences)} differences"
        )
    if differences:
        report = tmp_path / "differences.txt"
        report.write_text("\n\n".join(d.report() for d in differences))
        kinds = collections.Counter(
            (d.request.label, d.native["status"], d.extauthz["status"]) for d in differences
        )
        summary = "\n".join(f"  {n} x {kind}" for kind, n in kinds.most_common(20))
        pytest.fail(
            f"seed {seed}: {len(differences)} of {sent} requests answered differently "
            f"(request label, native status, extauthz status):\n{summary}\n"
            f"first difference:\n{differences[0].report()}\nall: {report}"
        )

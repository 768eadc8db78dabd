"""The collector schedule of a serving process (extauthz/server/collector.py).

Each case runs in its own interpreter: freezing the heap or changing thresholds in pytest's
process would change every other test's."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from extauthz.rig.rig import SAMPLES
from extauthz.server.collector import FULL_COLLECTION_EVERY


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settling_freezes_the_heap_and_spaces_full_collections_only() -> None:
    young, middle, full = _run(
        """
        import gc
        from extauthz.server.collector import settle_after_start
        before = gc.get_threshold()
        settle_after_start()
        after = gc.get_threshold()
        assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
        assert after[:2] == before[:2], (before, after)
        print(*after)
        """
    ).split()
    assert (int(young), int(middle)) == gc.get_threshold()[:2]  # CPython's defaults, kept
    assert int(full) == FULL_COLLECTION_EVERY != gc.get_threshold()[2]


def test_serve_settles_the_heap_once_it_has_started() -> None:
    """The `serve` command's coroutine, on ephemeral ports, with the sample policies: once it
    answers, the heap is frozen and full collections are spaced out; SIGTERM stops it."""
    out = _run(
        f"""
        import asyncio, gc, os, signal
        from extauthz.config.workload import Workload
        from extauthz.server.app import Settings, serve

        settings = Settings(
            ({str(SAMPLES / "gateway-policies.yaml")!r},),
            grpc_addr="127.0.0.1:0",
            http_addr="127.0.0.1:0",
            workload=Workload("istio-system", {{"app": "istio-ingressgateway"}}),
            watch_interval_seconds=0,
            drain_seconds=0,
        )
        before = (gc.get_threshold(), gc.get_freeze_count())

        async def main():
            async def probe():
                for _ in range(200):  # at most 10 s
                    if gc.get_freeze_count():
                        break
                    await asyncio.sleep(0.05)
                print(before, gc.get_threshold(), gc.get_freeze_count() > 0)
                os.kill(os.getpid(), signal.SIGTERM)

            asyncio.get_running_loop().create_task(probe())
            await serve(settings)

        asyncio.run(main())
        """
    )
    default = gc.get_threshold()
    settled = (*default[:2], FULL_COLLECTION_EVERY)
    assert out == f"({default}, 0) {settled} True"

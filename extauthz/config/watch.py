"""Notice when configuration files change, Kubernetes ConfigMap mounts included.

A ConfigMap volume swaps a `..data` symlink to a new timestamped directory; the files the
service reads are symlinks through it. Polling the resolved target, inode, size and mtime
of every config file catches that swap as well as an in-place edit, with no dependency on
inotify. Changes are debounced: a reload starts once the files stop changing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from extauthz.config.parse import ConfigError, config_files

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, str, int, int, int], ...]


def fingerprint(paths: Sequence[str]) -> Fingerprint:
    """What identifies the current content of the configuration, cheaply."""
    try:
        files = config_files(paths)
    except ConfigError:
        return ()  # a path vanished: the reload will report it
    entries = []
    for file in files:
        try:
            real = os.path.realpath(file)
            stat = os.stat(real)
        except OSError:
            continue
        entries.append((str(file), real, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    # A directory's own target (e.g. a swapped mount) counts too.
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries.append((str(path), os.path.realpath(path), 0, 0, 0))
    return tuple(sorted(entries))


class ConfigWatcher:
    def __init__(
        self,
        paths: Sequence[str],
        on_change: Callable[[], Awaitable[None]],
        interval_seconds: float = 1.0,
        debounce_seconds: float = 0.5,
    ) -> None:
        self._paths = tuple(paths)
        self._on_change = on_change
        self._interval = interval_seconds
        self._debounce = debounce_seconds
        self._task: asyncio.Task[None] | None = None
        self._seen: Fingerprint | None = None

    def prime(self) -> None:
        """Remember the files as they are now: call just before loading them, so a change
        made while the service starts is not missed."""
        self._seen = fingerprint(self._paths)

    async def _fingerprint(self) -> Fingerprint:
        return await asyncio.to_thread(fingerprint, self._paths)

    async def _run(self) -> None:
        seen = self._seen if self._seen is not None else await self._fingerprint()
        while True:
            await asyncio.sleep(self._interval)
            current = await self._fingerprint()
            if current == seen:
                continue
            # Debounce: wait until the files hold still (a writer may not be done).
            while True:
                await asyncio.sleep(self._debounce)
                settled = await self._fingerprint()
                if settled == current:
                    break
                current = settled
            seen = current
            log.info("configuration files changed; reloading")
            try:
                await self._on_change()
            except Exception:  # never let a reload failure stop the watcher
                log.exception("reload failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="config watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

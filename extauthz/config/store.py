"""The configuration now serving: one Snapshot reference, swapped whole on reload."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from extauthz.config.compile import Snapshot, compile_snapshot
from extauthz.config.parse import ConfigError, load_config
from extauthz.config.workload import Workload

log = logging.getLogger(__name__)


class ConfigStore:
    def __init__(self, paths: Sequence[str], workload: Workload, root_namespace: str) -> None:
        self.paths = tuple(paths)
        self.workload = workload
        self.root_namespace = root_namespace
        self._current: Snapshot | None = None
        self.last_error = ""

    @property
    def current(self) -> Snapshot:
        if self._current is None:
            raise RuntimeError("no configuration loaded")
        return self._current

    @property
    def is_loaded(self) -> bool:
        return self._current is not None

    def load(self) -> Snapshot:
        """Parse and compile everything, then swap. On error the last good snapshot stays
        and ConfigError propagates with a message naming file, document and field."""
        generation = self._current.generation + 1 if self._current else 1
        try:
            config = load_config(self.paths, default_namespace=self.workload.namespace)
            snapshot = compile_snapshot(config, self.workload, self.root_namespace, generation)
        except ConfigError as exc:
            self.last_error = str(exc)
            raise
        for warning in config.warnings:
            log.warning("%s", warning)
        self._current = snapshot
        self.last_error = ""
        return snapshot

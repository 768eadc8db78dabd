"""The configuration now serving: one Generation reference, swapped whole on reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from extauthz.config.compile import Generation, Snapshot, compile_generation
from extauthz.config.parse import ConfigError, load_config
from extauthz.config.workload import Workload

log = logging.getLogger(__name__)


class ConfigStore:
    def __init__(self, paths: Sequence[str], workload: Workload, root_namespace: str) -> None:
        self.paths = tuple(paths)
        self.workload = workload  # the default workload (CLI), unless a request names one
        self.root_namespace = root_namespace
        self._generation: Generation | None = None
        self.last_error = ""
        self.last_error_at: float | None = None

    @property
    def generation(self) -> Generation:
        if self._generation is None:
            raise RuntimeError("no configuration loaded")
        return self._generation

    @property
    def current(self) -> Snapshot:
        """The default workload's snapshot of the generation now serving."""
        return self.generation.snapshot_for(self.workload)

    @property
    def is_loaded(self) -> bool:
        return self._generation is not None

    def set_generation(self, generation: Generation | None) -> None:
        self._generation = generation

    def build(self) -> Generation:
        """Read, parse and compile everything into the next generation, without swapping.
        Safe to run in a worker thread. Raises ConfigError naming file, document and field."""
        number = self._generation.number + 1 if self._generation else 1
        try:
            config = load_config(self.paths, default_namespace=self.workload.namespace)
            generation = compile_generation(config, self.root_namespace, number)
            generation.snapshot_for(self.workload)
        except ConfigError as exc:
            self.last_error = str(exc)
            self.last_error_at = time.time()
            raise
        for warning in config.warnings:
            log.warning("%s", warning)
        return generation

    def swap(self, generation: Generation) -> None:
        """One reference assignment: a Check sees the old generation or the new, never a mix."""
        self._generation = generation
        self.last_error = ""

    def load(self) -> Generation:
        """Build and swap; on error the last good generation stays."""
        generation = self.build()
        self.swap(generation)
        return generation

"""The configuration now serving: one Generation reference, swapped whole on reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from extauthz.config.limits import ConfigLimits
from extauthz.config.parse import ConfigError, load_config
from extauthz.config.workload import Workload
from extauthz.snapshot.compile import Generation, Snapshot, compile_generation

log = logging.getLogger(__name__)


class ConfigStore:
    def __init__(
        self,
        paths: Sequence[str],
        workload: Workload,
        root_namespace: str,
        limits: ConfigLimits | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.workload = workload  # the default workload (CLI), unless a request names one
        self.root_namespace = root_namespace
        self.limits = limits or ConfigLimits()
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

    def build(self) -> Generation | None:
        """Read, parse and compile everything into the next generation, without swapping;
        None when the files hold exactly what is serving. Safe to run in a worker thread.
        Raises ConfigError (one line, naming file, document and field where known) for any
        failure, an unexpected one included: a configuration that cannot be built is
        rejected like an invalid one, never half-applied."""
        serving = self._generation
        try:
            config = load_config(self.paths, self.workload.namespace, self.limits)
            if serving is not None and config.digest == serving.config.digest:
                return None
            number = serving.number + 1 if serving is not None else 1
            generation = compile_generation(
                config, self.root_namespace, number, self.limits.refuse_crit
            )
            generation.snapshot_for(self.workload)
        except ConfigError:
            raise
        except RecursionError as exc:
            raise ConfigError("the configuration is nested too deeply to compile") from exc
        except Exception as exc:
            log.debug("building the configuration failed", exc_info=True)
            raise ConfigError(
                f"the configuration could not be built: {type(exc).__name__}: {exc}"
            ) from exc
        for warning in config.warnings:
            log.warning("%s", warning)
        return generation

    def reject(self, error: str) -> bool:
        """Remember a rejected configuration; False when it is the very error already
        reported (the same broken files seen again), so it is said once."""
        repeated = error == self.last_error
        self.last_error = error
        self.last_error_at = time.time()
        return not repeated

    def swap(self, generation: Generation) -> None:
        """One reference assignment: a Check sees the old generation or the new, never a mix."""
        self._generation = generation
        self.last_error = ""
        self.last_error_at = None

    def clear_error(self) -> None:
        """The files hold what is serving again (a broken edit was undone)."""
        self.last_error = ""
        self.last_error_at = None

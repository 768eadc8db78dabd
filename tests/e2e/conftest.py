from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from extauthz.rig.rig import Rig


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The compose topology on loopback, shared by the read-only e2e tests."""
    with Rig(Path(tmp_path_factory.mktemp("rig"))) as running:
        yield running


@pytest.fixture
def own_rig(tmp_path: Path) -> Iterator[Rig]:
    """A rig of its own, for tests that stop parts of it."""
    with Rig(tmp_path) as running:
        yield running

"""Every test runs sealed (see :mod:`tests.fixtures.env`): its own HOME and empty git configuration, none of
the outer environment's credentials or CI variables, fixed commit dates."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.env import seal


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG cache for the session (per xdist worker): act and friends keep their downloads in it."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def sealed_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> dict[str, str]:
    """Replace ``os.environ`` with the sealed environment for the test (restored afterwards)."""
    return seal(monkeypatch, tmp_path_factory.mktemp("home"), shared_cache)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A root-owned 0755 directory under /tmp: every user can reach it, so a refusal inside it comes from
    the mode of the entry itself, not from an unreachable parent (pytest's tmp_path is 0700). Sandboxed
    processes (the ``user`` backend's accounts) work in directories made here."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)

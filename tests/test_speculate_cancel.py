"""Speculative checks cancelled (issue #12's audit): nothing is left running or lying around — no check
process, no scratch clone or directory, no ``ci-swarm-check/*`` branch in the user's repository — whether
the cancellation finds the check running in the real sandbox or its scratch clone still being made."""

from __future__ import annotations

import asyncio
import secrets
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from ci_swarm import git, trash, verify
from ci_swarm.clones import GitClones
from ci_swarm.models import Check, Subtask
from ci_swarm.sandbox import resolve_policy
from ci_swarm.speculate import Speculation
from ci_swarm.workspace import Workspace
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY


class Recording(GitClones):
    """The scratch clones' maker, remembering every directory it created; ``hold`` (when set) keeps each
    ``make`` from returning until ``release`` is set."""

    dirs: ClassVar[list[Path]] = []
    made: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()
    hold: ClassVar[bool] = False

    def _where(self) -> tuple[Path, Path]:
        where = super()._where()
        Recording.dirs.extend(where)
        return where

    def make(self, sub: Subtask, branch: str, start: str) -> Workspace:
        ws = super().make(sub, branch, start)
        Recording.made.set()
        if Recording.hold:
            Recording.release.wait()
        return ws


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[Recording]:
    Recording.dirs, Recording.made, Recording.release = [], threading.Event(), threading.Event()
    Recording.hold = False
    monkeypatch.setattr(verify, "GitClones", Recording)
    return Recording


def _marked_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _assert_nothing_left(repo: Path, made: list[Path]) -> None:
    trash.wait()
    assert made, "no scratch clone was started"
    assert [p for p in made if p.exists()] == []
    assert git.list_refs(repo, "refs/heads/ci-swarm-check/") == ()


def test_cancel_while_the_check_runs_kills_it_and_removes_its_clone(
    tmp_path: Path, recording: type[Recording]
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    marker = f"speculate-{secrets.token_hex(6)}"
    check = Check("slow", (SANDBOX_PY, "-c", "import time; time.sleep(600)", marker), timeout=900)
    gate = verify.checker(repo, (check,), resolve_policy(None))

    async def go() -> None:
        spec = Speculation(repo, gate)
        spec.offer(git.head_commit(repo))
        while not _marked_processes(marker):  # the check is running in the sandbox
            await asyncio.sleep(0.05)
        await spec.cancel()

    asyncio.run(go())
    assert _marked_processes(marker) == []
    _assert_nothing_left(repo, recording.dirs)


def test_cancel_while_the_scratch_clone_is_made_leaves_no_branch_or_directory(
    tmp_path: Path, recording: type[Recording]
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    recording.hold = True
    gate = verify.checker(repo, (Check("never", (SANDBOX_PY, "-c", "pass")),), resolve_policy(None))

    async def go() -> None:
        spec = Speculation(repo, gate)
        spec.offer(git.head_commit(repo))
        await asyncio.to_thread(recording.made.wait)  # the branch and clone exist; make has not returned
        recording.release.set()  # make returns, but the cancellation below reaches the task first
        await spec.cancel()

    asyncio.run(go())
    _assert_nothing_left(repo, recording.dirs)

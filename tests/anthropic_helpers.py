"""Helpers for the Claude / LLM tests: worktrees on real git repos (built with :mod:`tests.fixtures`), the
fake Anthropic API, sessions.

For the lead's ``ci-swarm run --task`` end-to-end test: :func:`three_subtask_script` is a scripted model that
plans 3 subtasks (code, tests, docs) whose agents edit files with the tools; :func:`serve_fake` starts it
(``ANTHROPIC_BASE_URL=fake.base_url``, any key), or write it out with :func:`write_script` for
``python -m ci_swarm.testing.fake_anthropic --script FILE``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ci_swarm import git
from ci_swarm.llm.session import LLMSession, LLMSettings
from ci_swarm.models import Plan, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.testing.anthropic_script import (
    Script,
    ScriptedSubtask,
    edit_file_call,
    script_to_dict,
    task_script,
    write_file_call,
)
from ci_swarm.testing.fake_anthropic import FakeAnthropic, RequestRecord
from ci_swarm.workspace import Workspace

T = TypeVar("T")
KEY = "sk-ant-test"

SAMPLE_FILES: Mapping[str, str] = {
    "README.md": "# sample\n\nA tiny sample project.\n",
    "CLAUDE.md": "Use 4-space indents. Keep functions small.\n",
    "src/app.py": "def main():\n    return 'hello'\n",
    "docs/index.md": "# Docs\n\nNothing yet.\n",
}


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_workspace(repo: Path, subtask: Subtask, tmp: Path) -> Workspace:
    """A branch and worktree for ``subtask`` at HEAD, as the orchestrator makes them."""
    start = git.head_commit(repo)
    branch = f"swarm/test/{subtask.id}"
    git.create_branch(repo, branch, start)
    tree = tmp / "wt" / subtask.id
    git.worktree_add(repo, tree, branch)
    return Workspace(tree, branch, start, subtask.id, subtask.paths)


def context(task: str = "the task", subtasks: Sequence[Subtask] = ()) -> AgentContext:
    return AgentContext("run1", task, Plan(task, tuple(subtasks)))


def settings(**overrides: Any) -> LLMSettings:
    """Settings for tests: short back-offs come from the fake's retry-after-ms; few retries."""
    base = LLMSettings(max_retries=3, max_concurrency=4, request_timeout=30.0)
    return replace(base, **overrides)


def session_for(fake: FakeAnthropic, **overrides: Any) -> LLMSession:
    return LLMSession.from_env(
        settings(**overrides), {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.base_url}
    )


@contextmanager
def serve_fake(script: Script) -> Iterator[FakeAnthropic]:
    with FakeAnthropic(script) as fake:
        yield fake


def tool_results(record: RequestRecord) -> list[Mapping[str, Any]]:
    """The tool_result blocks of the last user message of a recorded request."""
    assert record.body is not None
    last = record.body["messages"][-1]
    content = last["content"] if isinstance(last["content"], list) else []
    return [b for b in content if b.get("type") == "tool_result"]


THREE_SUBTASKS: tuple[ScriptedSubtask, ...] = (
    ScriptedSubtask(
        "code",
        "builder",
        "Add greet()",
        paths=("src/greet.py",),
        calls=(
            {"tool": "read_file", "input": {"path": "src/app.py"}},
            write_file_call("src/greet.py", "def greet(name):\n    return f'hello {name}'\n"),
        ),
        summary="added greet()",
    ),
    ScriptedSubtask(
        "tests",
        "tester",
        "Test greet()",
        paths=("tests/test_greet.py",),
        calls=(
            write_file_call(
                "tests/test_greet.py",
                "from src.greet import greet\n\n\ndef test_greet():\n    assert greet('x') == 'hello x'\n",
            ),
        ),
        summary="added a test",
    ),
    ScriptedSubtask(
        "docs",
        "documenter",
        "Document greet()",
        paths=("docs/index.md",),
        calls=(edit_file_call("docs/index.md", "Nothing yet.", "Call `greet(name)` to greet someone."),),
        summary="documented greet()",
    ),
)


def three_subtask_script(**kwargs: Any) -> Script:
    """The planner plans code / tests / docs; each agent edits its files with the tools, then finishes.
    Works on a repo holding ``SAMPLE_FILES`` (the docs agent edits ``docs/index.md``)."""
    return task_script(THREE_SUBTASKS, **kwargs)


def write_script(script: Script, path: Path) -> Path:
    path.write_text(json.dumps(script_to_dict(script), indent=2), encoding="utf-8")
    return path

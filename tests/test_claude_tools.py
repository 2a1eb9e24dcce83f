"""The agent tools on a real worktree: results, refusals as error results, commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.agents.tools import TOOL_NAMES, TOOL_SCHEMAS, ToolBox, ToolResult, check_input
from ci_swarm.allowlist import command_allowed
from ci_swarm.workspace import Workspace
from tests.anthropic_helpers import SAMPLE_FILES, arun
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY


@pytest.fixture
def box(open_dir: Path) -> ToolBox:
    """The tools in a workspace the sandbox account can reach; a clone of its own (as every agent's is),
    so a sandboxed ``git status`` works in it."""
    repo = make_repo(open_dir / "repo", SAMPLE_FILES)
    ws = Workspace(repo, "main", git.head_commit(repo), "code", ("src/**",))
    return ToolBox(ws, allowed_commands=(("git", "status"), (SANDBOX_PY, "-c")), command_timeout=5)


def call(box: ToolBox, name: str, **args: Any) -> ToolResult:
    return arun(box.run(name, args))


def test_the_tool_contract() -> None:
    assert TOOL_NAMES == (
        "list_files",
        "read_file",
        "search",
        "write_file",
        "edit_file",
        "delete_file",
        "run_command",
        "finish",
    )
    required = {t["name"]: t["input_schema"]["required"] for t in TOOL_SCHEMAS}
    assert required["edit_file"] == ["path", "old", "new"]
    assert required["list_files"] == []
    assert set(TOOL_SCHEMAS[6]["input_schema"]["properties"]) == {"argv"}


def test_list_files_with_pattern_and_no_git_dir(box: ToolBox) -> None:
    listing = call(box, "list_files").content.splitlines()
    assert "src/app.py" in listing and "README.md" in listing
    assert not any(p.startswith(".git") for p in listing)
    assert call(box, "list_files", pattern="*.md").content.splitlines() == [
        "CLAUDE.md",
        "README.md",
        "docs/index.md",
    ]
    assert call(box, "list_files", path="src").content == "src/app.py"


def test_read_file_whole_and_by_lines(box: ToolBox) -> None:
    box.workspace.write_text("src/many.py", "".join(f"line {i}\n" for i in range(1, 11)))
    assert call(box, "read_file", path="src/app.py").content.startswith("def main():")
    assert call(box, "read_file", path="src/many.py", start_line=3, end_line=4).content == "line 3\nline 4\n"
    result = call(box, "read_file", path="src/many.py", start_line=20)
    assert result.is_error and "out of range" in result.content


def test_search_uses_git_grep_including_new_files(box: ToolBox) -> None:
    box.workspace.write_text("src/new.py", "hello = 1\n")
    found = call(box, "search", pattern="hello").content
    assert "src/app.py:2:" in found and "src/new.py:1:" in found
    assert call(box, "search", pattern="nothing-like-this").content == "(no matches)"
    assert "src/app.py" not in call(box, "search", pattern="hello", path="src/new.py").content


def test_write_edit_delete_and_outside_paths_are_flagged(box: ToolBox) -> None:
    assert not call(box, "write_file", path="src/new.py", content="x = 1\n").is_error
    assert (box.workspace.root / "src/new.py").read_text() == "x = 1\n"
    outside = call(box, "write_file", path="docs/extra.md", content="# extra\n")
    assert not outside.is_error and "outside this subtask's paths" in outside.content
    assert not call(box, "edit_file", path="src/app.py", old="'hello'", new="'hi'").is_error
    assert "'hi'" in (box.workspace.root / "src/app.py").read_text()
    assert not call(box, "delete_file", path="src/new.py").is_error
    assert not (box.workspace.root / "src/new.py").exists()
    assert list(box.written) == ["src/new.py", "docs/extra.md", "src/app.py"]
    assert list(box.outside) == ["docs/extra.md"]


def test_strict_paths_refuses_writes_outside(box: ToolBox) -> None:
    box.strict_paths = True
    result = call(box, "write_file", path="README.md", content="gone")
    assert result.is_error and "strict_paths" in result.content
    assert (box.workspace.root / "README.md").read_text().startswith("# sample")
    assert not call(box, "write_file", path="src/ok.py", content="").is_error


@pytest.mark.parametrize(
    ("old", "count"),
    [("not there", 0), ("'", 2)],
)
def test_edit_file_must_match_exactly_once(box: ToolBox, old: str, count: int) -> None:
    result = call(box, "edit_file", path="src/app.py", old=old, new="x")
    assert result.is_error
    assert f"matched {count} times" in result.content
    assert (box.workspace.root / "src/app.py").read_text() == "def main():\n    return 'hello'\n"


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "/etc/passwd", ".git/config", "src/../../x", "src/../.git/HEAD"],
)
def test_paths_outside_the_worktree_are_refused(box: ToolBox, path: str) -> None:
    for name, args in (
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("delete_file", {"path": path}),
        ("edit_file", {"path": path, "old": "a", "new": "b"}),
    ):
        result = arun(box.run(name, args))
        assert result.is_error and result.content.startswith("refused:"), (name, result)
    assert not (box.workspace.root.parent / "outside.txt").exists()


def test_symlink_escape_is_refused(box: ToolBox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, box.workspace.root / "src" / "link.txt")
    result = call(box, "read_file", path="src/link.txt")
    assert result.is_error and "outside the worktree" in result.content


def test_missing_fields_and_wrong_types_are_error_results(box: ToolBox) -> None:
    assert "missing required field(s): content" in call(box, "write_file", path="a").content
    assert "field 'path' must be a string" in call(box, "read_file", path=7).content
    assert "must be a non-empty list of strings" in call(box, "run_command", argv=[]).content
    assert "unknown field 'mode'" in call(box, "list_files", mode="x").content
    assert "unknown tool 'rm_rf'" in call(box, "rm_rf").content
    assert check_input("read_file", "not an object") == "read_file: input must be an object"


def test_missing_file_is_an_error_result(box: ToolBox) -> None:
    assert call(box, "read_file", path="src/none.py").content == "src/none.py: no such file"
    assert call(box, "delete_file", path="src/none.py").is_error
    assert call(box, "read_file", path="src").is_error


def test_commands_on_the_allow_list_run_without_secrets(
    box: ToolBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"ANTHROPIC_API_KEY": "sk-secret", "MY_TOKEN": "t0k", "PLAIN": "ok"}.items():
        monkeypatch.setenv(name, value)
    code = (
        "import os; print(sorted(k for k in os.environ if k in ('ANTHROPIC_API_KEY', 'MY_TOKEN', 'PLAIN')))"
    )
    result = call(box, "run_command", argv=[SANDBOX_PY, "-c", code])
    assert not result.is_error
    assert result.content.splitlines() == ["exit code 0", "[]"]  # an allow-list: none of ci-swarm's variables
    assert "exit code 0" in call(box, "run_command", argv=["git", "status"]).content


def test_command_not_on_the_allow_list_is_refused(box: ToolBox) -> None:
    result = call(box, "run_command", argv=["rm", "-rf", "/"])
    assert result.is_error and "not on the allow-list" in result.content
    assert "git status" in result.content


def test_command_failure_timeout_and_truncation(box: ToolBox) -> None:
    failed = call(box, "run_command", argv=[SANDBOX_PY, "-c", "import sys; sys.exit(3)"])
    assert failed.is_error and failed.content.startswith("exit code 3")
    box.command_timeout = 0.3
    slow = call(box, "run_command", argv=[SANDBOX_PY, "-c", "import time; time.sleep(30)"])
    assert slow.is_error and "timed out after 0.3s" in slow.content
    loud = call(box, "run_command", argv=[SANDBOX_PY, "-c", "print('x' * 100000)"])
    assert "characters cut" in loud.content and len(loud.content) < 20_000


def test_command_allow_list_matching() -> None:
    patterns = (("pytest",), ("python", "-m", "pytest"), ("npm", "run", "test*"))
    assert command_allowed(["pytest", "-q"], patterns)
    assert command_allowed(["python", "-m", "pytest", "tests/"], patterns)
    assert not command_allowed(["python", "-c", "evil"], patterns)
    assert command_allowed(["npm", "run", "test:unit"], patterns)
    assert not command_allowed(["npm"], patterns)
    assert not command_allowed(["anything"], ((),))


def test_finish_carries_the_summary(box: ToolBox) -> None:
    result = call(box, "finish", summary="all done")
    assert result.finished and result.content == "all done"


def test_search_reads_nothing_the_agent_put_in_its_clones_git_dir(box: ToolBox, tmp_path: Path) -> None:
    """The agent owns its clone's .git: a config it wrote (an fsmonitor command) never runs, and neither
    .git's contents nor ignored files show up in a search."""
    marker = tmp_path / "fsmonitor-ran"
    git.run(box.workspace.root, "config", "core.fsmonitor", f"touch {marker}; echo")
    included = tmp_path / "agent.cfg"  # config the agent points its clone at: it would change grep's output
    included.write_text("[grep]\n\tcolumn = true\n\tfullName = false\n")
    git.run(box.workspace.root, "config", "include.path", str(included))
    box.workspace.write_text(".gitignore", "ignored.txt\n")
    box.workspace.write_text("ignored.txt", "hello = 2\n")
    found = call(box, "search", pattern="hello").content
    assert "src/app.py:2:" in found and "ignored.txt" not in found
    assert "src/app.py:2:    return 'hello'" in found.splitlines()  # no column: clone config unread
    assert call(box, "search", pattern="fsmonitor").content == "(no matches)"  # not .git/config
    assert not marker.exists()

"""Every edit path keeps the bytes it does not change: line endings (CRLF, mixed), bytes that are not UTF-8,
symlinks (deleted as links, listed when dangling), submodule paths (refused with a reason) and file names
(a backslash is refused, as gitpaths and collection refuse it, never turned into ``/``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from ci_swarm import git
from ci_swarm.agents.scripted import ScriptedAgent
from ci_swarm.agents.tools import ToolBox, ToolResult
from ci_swarm.clones import GitClones
from ci_swarm.errors import PathEscapeError, PlanError
from ci_swarm.models import AgentOutcome, AgentSpec, Plan, Subtask
from ci_swarm.plan import freeze
from ci_swarm.ports import AgentContext
from ci_swarm.workspace import Workspace
from tests.fixtures import commit, make_repo
from tests.helpers import plan_of, run_plan_cli, scripted

CRLF_FILE = b"".join(b"line %d\r\n" % n for n in range(1, 17))
MIXED = b"one\r\ntwo\nthree\r\nfour\n"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    files: dict[str, str | bytes] = {
        "crlf.txt": CRLF_FILE,
        "mixed.txt": MIXED,
        "target.txt": "kept\n",
        "lf.txt": "a\nb\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    return Workspace(repo, "main", git.head_commit(repo), "a", ())


def sub(sub_id: str = "a", agent: AgentSpec | None = None) -> Subtask:
    return Subtask(id=sub_id, role="builder", title=sub_id, agent=agent)


def run_scripted(ws: Workspace, *edits: dict[str, str]) -> AgentOutcome:
    spec = AgentSpec("scripted", freeze({"edits": list(edits)}))
    ctx = AgentContext("r", "t", Plan("t", (sub(),)))
    return asyncio.run(ScriptedAgent(spec).run(sub(agent=spec), ws, ctx))


def call(box: ToolBox, name: str, **args: Any) -> ToolResult:
    return asyncio.run(box.run(name, args))


# --- line endings ------------------------------------------------------------------------------


def test_scripted_replace_and_append_keep_crlf(ws: Workspace) -> None:
    outcome = run_scripted(
        ws,
        {"replace": "crlf.txt", "old": "line 3\nline 4", "new": "LINE 3\nLINE 4"},
        {"append": "crlf.txt", "text": "tail 1\ntail 2\n"},
    )
    assert outcome.ok, outcome.error
    expected = CRLF_FILE.replace(b"line 3\r\nline 4", b"LINE 3\r\nLINE 4") + b"tail 1\r\ntail 2\r\n"
    assert (ws.root / "crlf.txt").read_bytes() == expected


def test_scripted_write_keeps_the_content_as_given(ws: Workspace) -> None:
    outcome = run_scripted(ws, {"write": "crlf.txt", "content": "new\nlf\r\nmixed\n"})
    assert outcome.ok, outcome.error
    assert (ws.root / "crlf.txt").read_bytes() == b"new\nlf\r\nmixed\n"


def test_mixed_line_endings_are_kept_outside_the_edited_line(ws: Workspace) -> None:
    assert run_scripted(ws, {"replace": "mixed.txt", "old": "two", "new": "TWO\nand a half"}).ok
    assert (ws.root / "mixed.txt").read_bytes() == b"one\r\nTWO\nand a half\nthree\r\nfour\n"
    assert run_scripted(ws, {"replace": "mixed.txt", "old": "three", "new": "3\n3b"}).ok
    assert (ws.root / "mixed.txt").read_bytes() == b"one\r\nTWO\nand a half\n3\r\n3b\r\nfour\n"


def test_an_lf_file_stays_lf_and_bytes_that_are_not_utf8_survive(ws: Workspace) -> None:
    (ws.root / "latin1.txt").write_bytes(b"caf\xe9\r\nna\xefve\r\n")
    outcome = run_scripted(
        ws,
        {"replace": "lf.txt", "old": "a\r\nb", "new": "A\r\nB"},  # a CRLF in `old` matches an LF file too
        {"replace": "latin1.txt", "old": "na", "new": "NA"},
        {"append": "latin1.txt", "text": "more\n"},
    )
    assert outcome.ok, outcome.error
    assert (ws.root / "lf.txt").read_bytes() == b"A\nB\n"
    assert (ws.root / "latin1.txt").read_bytes() == b"caf\xe9\r\nNA\xefve\r\nmore\r\n"


def test_claude_edit_file_keeps_crlf_and_counts_matches_across_line_styles(ws: Workspace) -> None:
    box = ToolBox(ws)
    result = call(box, "edit_file", path="crlf.txt", old="line 7\nline 8\n", new="seven\neight\n")
    assert not result.is_error, result.content
    expected = CRLF_FILE.replace(b"line 7\r\nline 8\r\n", b"seven\r\neight\r\n")
    assert (ws.root / "crlf.txt").read_bytes() == expected
    twice = call(box, "edit_file", path="mixed.txt", old="e\n", new="E\n")  # one, three: both CRLF
    assert twice.is_error and "matched 2 times" in twice.content
    result = call(box, "edit_file", path="mixed.txt", old="three\nfour", new="3\n4")
    assert not result.is_error, result.content
    assert (ws.root / "mixed.txt").read_bytes() == b"one\r\ntwo\n3\r\n4\n"
    assert call(box, "write_file", path="w.txt", content="x\r\ny\n").content.startswith("wrote w.txt")
    assert (ws.root / "w.txt").read_bytes() == b"x\r\ny\n"


def test_four_one_line_edits_of_a_crlf_file_merge_cleanly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"crlf.txt": CRLF_FILE})
    agents = [
        scripted(f"s{n}", edits=[{"replace": "crlf.txt", "old": f"line {n}\n", "new": f"edited {n}\n"}])
        for n in (2, 6, 10, 14)
    ]
    proc, report = run_plan_cli(repo, tmp_path, *agents)
    assert proc.returncode == 0, proc.stderr
    assert [s["status"] for s in report["subtasks"]] == ["succeeded"] * 4
    assert report["conflicts"] == []
    assert [m["status"] for m in report["merges"]] == ["clean"] * 4
    merged = git.read_blob(repo, f"{report['integration_commit']}:crlf.txt")
    expected = CRLF_FILE
    for n in (2, 6, 10, 14):
        expected = expected.replace(b"line %d\r\n" % n, b"edited %d\r\n" % n)
    assert merged == expected


# --- symlinks ----------------------------------------------------------------------------------


def test_deleting_a_symlink_deletes_the_link_not_its_target(ws: Workspace) -> None:
    (ws.root / "link.txt").symlink_to("target.txt")
    (ws.root / "dirlink").symlink_to("sub", target_is_directory=True)
    (ws.root / "sub").mkdir()
    (ws.root / "sub" / "f.txt").write_text("f\n")
    assert run_scripted(ws, {"delete": "link.txt"}).ok
    assert not (ws.root / "link.txt").is_symlink()
    assert (ws.root / "target.txt").read_text() == "kept\n"
    result = call(ToolBox(ws), "delete_file", path="dirlink")
    assert result.content == "deleted dirlink"
    assert not (ws.root / "dirlink").is_symlink()
    assert (ws.root / "sub" / "f.txt").read_text() == "f\n"


def test_a_symlink_pointing_outside_can_be_deleted_but_not_followed(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs\n")
    (ws.root / "out").symlink_to(outside)
    refused = call(ToolBox(ws), "write_file", path="out", content="pwned")
    assert refused.is_error and "outside the worktree" in refused.content
    assert call(ToolBox(ws), "delete_file", path="out").content == "deleted out"
    assert not (ws.root / "out").is_symlink()
    assert outside.read_text() == "theirs\n"


def test_deleting_a_dangling_symlink_and_a_directory(ws: Workspace) -> None:
    (ws.root / "gone").symlink_to("nowhere")
    (ws.root / "adir").mkdir()
    assert run_scripted(ws, {"delete": "gone"}).ok
    assert not (ws.root / "gone").is_symlink()
    outcome = run_scripted(ws, {"delete": "adir"})
    assert outcome.error == "delete adir: is a directory, not a file"
    assert call(ToolBox(ws), "delete_file", path="adir").content == "adir: is a directory"


def test_dangling_symlinks_are_listed_not_fatal(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "docs").mkdir()
    (ws.root / "docs" / "gone.md").symlink_to("missing.md")
    (ws.root / "far").symlink_to(tmp_path / "not-there")
    (ws.root / "alias.txt").symlink_to("target.txt")
    (ws.root / "sublink").symlink_to("docs", target_is_directory=True)
    result = call(ToolBox(ws), "list_files")
    assert not result.is_error
    lines = result.content.splitlines()
    assert "docs/gone.md -> missing.md" in lines
    assert f"far -> {tmp_path / 'not-there'}" in lines
    assert "alias.txt -> target.txt" in lines  # the link's own name, not its target's
    assert "sublink -> docs" in lines  # listed, not followed
    assert "target.txt" in lines
    assert call(ToolBox(ws), "list_files", pattern="*.md").content == "docs/gone.md -> missing.md"


# --- submodules --------------------------------------------------------------------------------


@pytest.fixture
def with_submodule(tmp_path: Path) -> Any:
    repo = make_repo(tmp_path / "repo", {"README.md": "# r\n"})
    start = commit(repo, "main", {"lib/dep": ("160000", b"")})  # an uninitialised submodule
    spaces = GitClones(repo, None, "sm")
    ws = spaces.make(sub("a"), "swarm/sm-agents/a", start)
    yield ws
    spaces.dispose(ws)
    spaces.close()


def test_a_scripted_write_inside_a_submodule_fails_naming_it(with_submodule: Workspace) -> None:
    ws = with_submodule
    assert ws.submodules == ("lib/dep",)
    edits = ({"write": "README.md", "content": "ok\n"}, {"write": "lib/dep/x.py", "content": "x"})
    outcome = run_scripted(ws, *edits)
    assert not outcome.ok
    assert "'lib/dep/x.py' refused: it is inside submodule 'lib/dep'" in outcome.error
    assert not (ws.root / "lib/dep/x.py").exists()


def test_claude_tools_refuse_writes_inside_a_submodule(with_submodule: Workspace) -> None:
    ws = with_submodule
    (ws.root / "into").symlink_to("lib/dep", target_is_directory=True)
    box = ToolBox(ws)
    for name, args in (
        ("write_file", {"path": "lib/dep/new.py", "content": "x"}),
        ("write_file", {"path": "into/new.py", "content": "x"}),  # through a symlink too
        ("write_file", {"path": "lib/dep", "content": "x"}),
        ("delete_file", {"path": "lib/dep"}),
    ):
        result = call(box, name, **args)
        assert result.is_error, (name, args)
        assert "inside submodule 'lib/dep'" in result.content
    assert list((ws.root / "lib/dep").iterdir()) == []
    assert box.written == {}


# --- names -------------------------------------------------------------------------------------


def test_a_backslash_in_a_name_is_refused_never_turned_into_a_slash(ws: Workspace) -> None:
    with pytest.raises(PathEscapeError, match="backslash"):
        ws.resolve("dir\\file.txt")
    result = call(ToolBox(ws), "write_file", path="dir\\file.txt", content="x")
    assert result.is_error and "backslash" in result.content
    assert not (ws.root / "dir").exists() and not (ws.root / "dir\\file.txt").exists()
    with pytest.raises(PlanError, match=r"edit #1: path 'a\\\\b.txt' refused: a backslash"):
        plan_of(scripted("a", edits=[{"write": "a\\b.txt", "content": "x"}]))


def test_other_names_are_kept_byte_exact(ws: Workspace) -> None:
    names = ["sp ace.txt", "ünï.txt", "trailing .txt", "-dash", "a'quote\".txt"]
    box = ToolBox(ws)
    for name in names:
        assert not call(box, "write_file", path=name, content=name).is_error
    assert all((ws.root / name).read_text() == name for name in names)
    assert list(box.written) == names


def test_a_name_that_is_not_utf8_is_listed_escaped_and_results_stay_utf8(ws: Workspace) -> None:
    (ws.root / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"needle\n")
    box = ToolBox(ws)
    listing = call(box, "list_files").content
    listing.encode("utf-8")  # what goes to the model: no lone surrogate
    assert "caf\\xe9.txt (the name is not UTF-8" in listing
    found = call(box, "search", pattern="needle").content
    assert found == "caf\\xe9.txt:1:needle"

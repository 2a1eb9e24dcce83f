"""The merge queue on real repositories: clean merges, every conflict kind, policies, invariants."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from benchmarks import bench_replay
from ci_swarm import git
from ci_swarm.config import load_config
from ci_swarm.diff3 import MARKER_SIZE, Block, fix_eof, parse_diff3
from ci_swarm.errors import ConfigError, GitError, PlanError, RepoError
from ci_swarm.merge import MergeQueue
from ci_swarm.merge_only import merge_branches, merge_report
from ci_swarm.models import ConflictKind, Insertions, MergePolicy, MergeRecord, MergeStatus, OverlapKind
from ci_swarm.plan import plan_from_dict
from ci_swarm.resolve import Stage, other
from tests.fixtures import Content, commit, make_repo
from tests.merge_helpers import branch, edit_lines, lines, random_edit, read

INTEGRATION = "swarm/run1"
TEN = lines(10)


def setup(tmp_path: Path, files: Mapping[str, str | bytes]) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo", files)
    base = git.head_commit(repo)
    git.create_branch(repo, INTEGRATION, base)
    return repo, base


def make_queue(
    repo: Path, base: str, roles: Mapping[str, str] | None = None, prefer: tuple[str, ...] = ()
) -> MergeQueue:
    return MergeQueue(repo, INTEGRATION, base, MergePolicy(prefer=prefer), roles or {})


def agent(repo: Path, start: str, sub: str, changes: Mapping[str, Content]) -> str:
    """Branch ``swarm/run1-agents/<sub>``: one commit on ``start`` with the Swarm-Subtask trailer."""
    return branch(
        repo, f"{INTEGRATION}-agents/{sub}", commit(repo, start, changes, f"{sub} work", subtask=sub)
    )


def check_invariants(repo: Path, queue: MergeQueue, records: Sequence[MergeRecord]) -> None:
    """No conflict marker in the final tree; every content conflict's lines show its kept text."""
    markers = git.run(repo, "grep", "-I", "-e", "^<<<<<<<", "-e", "^>>>>>>>", queue.tip, ok=(0, 1))
    assert markers.returncode == 1, markers.text
    for record in records:
        for conflict in record.conflicts:
            if conflict.kind is ConflictKind.CONTENT:
                text = read(repo, queue.tip, conflict.path) or ""
                body = text.splitlines(keepends=True)
                start, end = conflict.lines
                if conflict.kept_text:
                    assert "".join(body[start - 1 : end]) == conflict.kept_text
                else:
                    assert start == end


def merge_all(repo: Path, queue: MergeQueue, branches: Sequence[tuple[str, str, str]]) -> list[MergeRecord]:
    records = [queue.merge(sub, tip, start, n) for n, (sub, tip, start) in enumerate(branches, 1)]
    check_invariants(repo, queue, records)
    return records


# --- clean merges ---------------------------------------------------------------------------------


def test_disjoint_files_merge_cleanly_without_prediction(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"a.txt": "a\n", "b.txt": "b\n"})
    x = agent(repo, base, "x", {"a.txt": "a from x\n"})
    y = agent(repo, base, "y", {"b.txt": "b from y\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert [r.status for r in records] == [MergeStatus.CLEAN, MergeStatus.CLEAN]
    assert [r.predicted_conflicts for r in records] == [(), ()]
    assert read(repo, queue.tip, "a.txt") == "a from x\n"
    assert read(repo, queue.tip, "b.txt") == "b from y\n"
    assert queue.overlaps == ()
    assert git.rev_parse(repo, INTEGRATION) == queue.tip == records[-1].commit


def test_same_file_disjoint_hunks_both_land(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {2: "x2"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {4: "y4"})})  # line 3 between: clean
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].status is MergeStatus.CLEAN and records[1].predicted_conflicts == ()
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {2: "x2", 4: "y4"})
    assert [(o.a, o.b, o.path, o.kind) for o in queue.overlaps] == [("x", "y", "f.txt", OverlapKind.DISJOINT)]


def test_identical_edits_are_clean(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    same = edit_lines(TEN, {5: "same"})
    x = agent(repo, base, "x", {"f.txt": same})
    y = agent(repo, base, "y", {"f.txt": same, "g.txt": "y only\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].status is MergeStatus.CLEAN and records[1].conflicts == ()
    assert records[1].predicted_conflicts == ()
    assert read(repo, queue.tip, "f.txt") == same
    assert queue.overlaps[0].kind is OverlapKind.DISJOINT


def test_nothing_changed_is_skipped_and_tip_stays(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    queue = make_queue(repo, base)
    record = queue.merge("idle", base, base, 1)
    assert record.status is MergeStatus.SKIPPED
    assert record.commit == base == queue.tip == git.rev_parse(repo, INTEGRATION)


def test_dependent_started_from_tip_sees_no_overlap_with_its_dependency(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {3: "x3"})})
    queue = make_queue(repo, base)
    queue.merge("x", x, base, 1)
    start = queue.tip
    z = agent(repo, start, "z", {"f.txt": edit_lines(TEN, {3: "z3", 4: "z4"})})
    record = queue.merge("z", z, start, 2)
    assert record.status is MergeStatus.CLEAN and record.predicted_conflicts == ()
    assert queue.overlaps == ()
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {3: "z3", 4: "z4"})


def test_a_start_built_on_a_merge_is_compared_with_the_later_merges_only(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": lines(20)})
    queue = make_queue(repo, base)
    tips = []
    for n, sub in enumerate("abcd", start=1):  # disjoint edits: lines 1, 5, 9, 13
        queue.merge(sub, agent(repo, base, sub, {"f.txt": edit_lines(lines(20), {4 * n - 3: sub})}), base, n)
        tips.append(queue.tip)
    start = commit(repo, tips[1], {"other.txt": "someone built on top of b's merge\n"})
    w = agent(repo, start, "w", {"f.txt": edit_lines(read(repo, start, "f.txt") or "", {17: "w"})})
    before = len(queue.overlaps)
    record = queue.merge("w", w, start, 5)
    assert record.status is MergeStatus.CLEAN
    assert [(o.a, o.b) for o in queue.overlaps[before:]] == [("c", "w"), ("d", "w")]


def test_a_start_outside_the_queue_is_compared_with_every_merge(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": lines(20)})
    moved = commit(repo, base, {"NOTES.md": "the target moved\n"})
    git.create_branch(repo, "swarm/moved", moved)
    queue = MergeQueue(repo, "swarm/moved", moved, MergePolicy(), {})
    for n, sub in enumerate("abc", start=1):
        queue.merge(sub, agent(repo, base, sub, {"f.txt": edit_lines(lines(20), {4 * n - 3: sub})}), base, n)
    assert [(o.a, o.b) for o in queue.overlaps] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert read(repo, queue.tip, "NOTES.md") == "the target moved\n"


# --- content conflicts ------------------------------------------------------------------------------


def test_touching_lines_conflict_is_recorded_and_first_side_kept(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {3: "x3"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {4: "y4"})})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].status is MergeStatus.CONFLICTED
    assert records[1].predicted_conflicts == ("f.txt",)
    assert queue.overlaps[0].kind is OverlapKind.TOUCHING
    (conflict,) = records[1].conflicts
    assert (conflict.path, conflict.kind, conflict.subtask, conflict.kept_subtask) == (
        "f.txt",
        ConflictKind.CONTENT,
        "y",
        "x",
    )
    assert conflict.lines == (3, 4)
    assert conflict.kept_text == "x3\nline 4\n"
    assert conflict.other_text == "line 3\ny4\n"
    assert conflict.base_text == "line 3\nline 4\n"
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {3: "x3"})


def _insert_insert(tmp_path: Path, insertions: Insertions) -> tuple[Path, MergeQueue, list[MergeRecord]]:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {5: "line 5\nx after 5", 8: "x8"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {5: "line 5\ny after 5\ny again"})})
    queue = MergeQueue(repo, INTEGRATION, base, MergePolicy(insertions=insertions), {})
    return repo, queue, merge_all(repo, queue, [("x", x, base), ("y", y, base)])


def test_insert_insert_lands_both_sides_in_merge_order(tmp_path: Path) -> None:
    repo, queue, records = _insert_insert(tmp_path, Insertions.BOTH)
    assert records[1].predicted_conflicts == ("f.txt",)  # git does report it
    assert records[1].conflicts == ()
    assert records[1].joined == 1
    assert records[1].status is MergeStatus.CLEAN
    both = "line 5\nx after 5\ny after 5\ny again"
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {5: both, 8: "x8"})
    assert "1 insert/insert region(s) joined" in git.run(repo, "log", "-1", "--format=%B", queue.tip).text


def test_insert_insert_keep_keeps_the_integration_side_and_records_the_other(tmp_path: Path) -> None:
    repo, queue, records = _insert_insert(tmp_path, Insertions.KEEP)
    (conflict,) = records[1].conflicts
    assert records[1].joined == 0
    assert (conflict.kept_text, conflict.other_text, conflict.base_text) == (
        "x after 5\n",
        "y after 5\ny again\n",
        "",
    )
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {5: "line 5\nx after 5", 8: "x8"})


def test_insert_insert_next_to_a_replacement_is_still_one_kept_side(tmp_path: Path) -> None:
    """A region whose base text is not empty is a real choice: no joining, a Conflict is recorded."""
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {5: "x5"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {5: "line 5\ny after 5"})})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].joined == 0
    assert len(records[1].conflicts) == 1


def _same_lines(tmp_path: Path, prefer: tuple[str, ...]) -> tuple[Path, MergeQueue, list[MergeRecord]]:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {1: "x1", 5: "x5"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {5: "y5", 9: "y9"})})
    queue = make_queue(repo, base, {"x": "builder", "y": "tester"}, prefer)
    return repo, queue, merge_all(repo, queue, [("x", x, base), ("y", y, base)])


def test_same_lines_policy_first_keeps_the_integration_side(tmp_path: Path) -> None:
    repo, queue, records = _same_lines(tmp_path, ())
    (conflict,) = records[1].conflicts
    assert (conflict.kept_subtask, conflict.subtask, conflict.kept_text, conflict.other_text) == (
        "x",
        "y",
        "x5\n",
        "y5\n",
    )
    assert conflict.lines == (5, 5)
    # the non-conflicting hunks of both sides landed
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {1: "x1", 5: "x5", 9: "y9"})
    assert queue.overlaps[0].kind is OverlapKind.OVERLAPPING


def test_same_lines_role_precedence_keeps_the_preferred_role(tmp_path: Path) -> None:
    repo, queue, records = _same_lines(tmp_path, ("tester", "builder"))
    (conflict,) = records[1].conflicts
    assert (conflict.kept_subtask, conflict.subtask, conflict.kept_text, conflict.other_text) == (
        "y",
        "x",
        "y5\n",
        "x5\n",
    )
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {1: "x1", 5: "y5", 9: "y9"})


def test_role_tie_and_unlisted_roles_keep_the_first(tmp_path: Path) -> None:
    _, _, records = _same_lines(tmp_path, ("documenter",))
    assert records[1].conflicts[0].kept_subtask == "x"


def test_each_region_owner_is_found_among_several_merged_subtasks(tmp_path: Path) -> None:
    text = lines(20)
    repo, base = setup(tmp_path, {"f.txt": text})
    x = agent(repo, base, "x", {"f.txt": edit_lines(text, {3: "x3"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(text, {15: "y15"})})
    z = agent(repo, base, "z", {"f.txt": edit_lines(text, {3: "z3", 15: "z15"})})
    roles = {"x": "documenter", "y": "builder", "z": "tester"}
    queue = make_queue(repo, base, roles, ("builder", "tester", "documenter"))
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base), ("z", z, base)])
    first, second = records[2].conflicts
    assert (first.kept_subtask, first.subtask, first.lines) == ("z", "x", (3, 3))  # tester > documenter
    assert (second.kept_subtask, second.subtask, second.lines) == ("y", "z", (15, 15))  # builder > tester
    assert read(repo, queue.tip, "f.txt") == edit_lines(text, {3: "z3", 15: "y15"})
    assert {(o.a, o.b) for o in queue.overlaps} == {("x", "y"), ("x", "z"), ("y", "z")}


def test_deletion_winning_points_at_the_line_before(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {4: None, 5: None})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {5: "y5"})})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert conflict.kept_text == "" and conflict.lines == (3, 3)
    assert conflict.other_text == "line 4\ny5\n" and conflict.base_text == "line 4\nline 5\n"


def test_crlf_file_keeps_its_line_endings(tmp_path: Path) -> None:
    crlf = TEN.replace("\n", "\r\n")
    repo, base = setup(tmp_path, {"win.txt": crlf})
    x = agent(repo, base, "x", {"win.txt": crlf.replace("line 2\r\n", "x2\r\n").replace("line 6", "x6")})
    y = agent(repo, base, "y", {"win.txt": crlf.replace("line 6", "y6").replace("line 9\r\n", "y9\r\n")})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert conflict.kept_text == "x6\r\n" and conflict.other_text == "y6\r\n" and conflict.lines == (6, 6)
    final = git.read_blob(repo, f"{queue.tip}:win.txt")
    assert final == crlf.replace("line 2", "x2").replace("line 6", "x6").replace("line 9", "y9").encode()
    assert final.count(b"\n") == final.count(b"\r\n")


def test_missing_final_newline_is_preserved(tmp_path: Path) -> None:
    text = "a\nb\nc\nd\ne"
    repo, base = setup(tmp_path, {"f.txt": text})
    x = agent(repo, base, "x", {"f.txt": "a\nX\nc\nd\nex"})
    y = agent(repo, base, "y", {"f.txt": "a\nb\nc\nd\ney"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kept_text, conflict.other_text, conflict.base_text) == ("ex", "ey", "e")
    assert read(repo, queue.tip, "f.txt") == "a\nX\nc\nd\nex"


def test_non_ascii_paths(tmp_path: Path) -> None:
    path, other = "données/été.txt", "naïve café.md"
    repo, base = setup(tmp_path, {path: TEN, other: "x\n"})
    x = agent(repo, base, "x", {path: edit_lines(TEN, {2: "x2"})})
    y = agent(repo, base, "y", {path: edit_lines(TEN, {2: "y2"}), other: "ÿ\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].predicted_conflicts == (path,)
    assert [c.path for c in records[1].conflicts] == [path]
    assert read(repo, queue.tip, other) == "ÿ\n"
    assert {o.path for o in queue.overlaps} == {path}


# --- whole-file conflicts -----------------------------------------------------------------------------


def test_add_add_keeps_one_side_whole(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"new.txt": "one\ntwo\n"})
    y = agent(repo, base, "y", {"new.txt": "uno\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kind, conflict.kept_subtask, conflict.subtask) == (ConflictKind.ADD_ADD, "x", "y")
    assert (conflict.kept_text, conflict.other_text, conflict.lines) == ("one\ntwo\n", "uno\n", (1, 2))
    assert read(repo, queue.tip, "new.txt") == "one\ntwo\n"
    assert records[1].predicted_conflicts == ("new.txt",)


def test_modify_then_delete(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {1: "x1"})})
    y = agent(repo, base, "y", {"f.txt": None})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kind, conflict.kept_subtask, conflict.subtask) == (ConflictKind.MODIFY_DELETE, "x", "y")
    assert conflict.other_text == "" and conflict.lines == (1, 10) and conflict.base_text == TEN
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {1: "x1"})
    assert "deleted" in conflict.reason


def test_delete_then_modify_keeps_the_deletion_and_records_the_text(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": None})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {1: "y1"})})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kind, conflict.kept_subtask, conflict.subtask) == (ConflictKind.MODIFY_DELETE, "x", "y")
    assert (conflict.lines, conflict.kept_text) == ((0, 0), "")
    assert conflict.other_text == edit_lines(TEN, {1: "y1"})
    assert read(repo, queue.tip, "f.txt") is None


def test_delete_then_modify_with_role_precedence_keeps_the_file(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"f.txt": None})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {1: "y1"})})
    queue = make_queue(repo, base, {"x": "deployer", "y": "builder"}, ("builder",))
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kept_subtask, conflict.subtask, conflict.other_text) == ("y", "x", "")
    assert read(repo, queue.tip, "f.txt") == edit_lines(TEN, {1: "y1"})


def test_binary_conflict_keeps_one_blob_and_describes_the_other(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"img.bin": b"\x89PNG\0base"})
    x = agent(repo, base, "x", {"img.bin": b"\x89PNG\0from x"})
    y = agent(repo, base, "y", {"img.bin": b"\x89PNG\0from y!"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kind, conflict.kept_subtask, conflict.lines) == (ConflictKind.BINARY, "x", (0, 0))
    assert conflict.other_text.startswith("(binary file, 12 bytes, blob ")
    assert git.read_blob(repo, f"{queue.tip}:img.bin") == b"\x89PNG\0from x"
    assert records[1].predicted_conflicts == ("img.bin",)


def test_rename_on_one_side_edit_on_the_other_merges_cleanly(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"old.py": lines(30)})
    x = agent(repo, base, "x", {"old.py": None, "new.py": lines(30)})
    y = agent(repo, base, "y", {"old.py": edit_lines(lines(30), {10: "y10"})})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].status is MergeStatus.CLEAN and records[1].predicted_conflicts == ()
    assert read(repo, queue.tip, "old.py") is None
    assert read(repo, queue.tip, "new.py") == edit_lines(lines(30), {10: "y10"})


def test_rename_delete_is_recorded(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"old.py": lines(30)})
    x = agent(repo, base, "x", {"old.py": None, "new.py": lines(30)})
    y = agent(repo, base, "y", {"old.py": None})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kind, conflict.path, conflict.kept_subtask, conflict.subtask) == (
        ConflictKind.RENAME,
        "new.py",
        "x",
        "y",
    )
    assert "rename/delete" in conflict.reason
    assert read(repo, queue.tip, "new.py") == lines(30)
    assert records[1].predicted_conflicts == ("new.py", "old.py")  # the conflict is at new.py


def test_rename_rename_keeps_one_name(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"old.py": lines(30)})
    x = agent(repo, base, "x", {"old.py": None, "by_x.py": lines(30)})
    y = agent(repo, base, "y", {"old.py": None, "by_y.py": lines(30)})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.kind, conflict.path, conflict.subtask, conflict.lines) == (
        ConflictKind.RENAME,
        "by_y.py",
        "y",
        (0, 0),
    )
    assert conflict.other_text == lines(30)
    assert git.tree_files(repo, queue.tip) == ("by_x.py",)


def test_file_directory_keeps_the_directory_and_no_tilde_path(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"d/inner.txt": "inner\n"})
    y = agent(repo, base, "y", {"d": "a file\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.path, conflict.subtask, conflict.other_text, conflict.lines) == (
        "d",
        "y",
        "a file\n",
        (0, 0),
    )
    assert "file/directory" in conflict.reason
    assert git.tree_files(repo, queue.tip) == ("d/inner.txt", "f.txt")
    assert records[1].predicted_conflicts == ("d",)


def test_symlink_versus_file_keeps_one_side(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN})
    x = agent(repo, base, "x", {"link": ("120000", "f.txt")})
    y = agent(repo, base, "y", {"link": "plain\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.path, conflict.subtask, conflict.other_text) == ("link", "y", "plain\n")
    entry = git.out(repo, "ls-tree", queue.tip, "--", "link")
    assert entry.startswith("120000 ")
    assert git.tree_files(repo, queue.tip) == ("f.txt", "link")


# --- the queue as a whole -------------------------------------------------------------------------------


def test_many_branches_make_a_chain_of_two_parent_merges(tmp_path: Path) -> None:
    files = {f"f{i}.txt": TEN for i in range(4)}
    repo, base = setup(tmp_path, files)
    before = dict(files)
    subs = []
    for i in range(4):
        tip = agent(repo, base, f"s{i}", {f"f{i}.txt": edit_lines(TEN, {i + 1: f"s{i}"}), "shared.txt": None})
        subs.append((f"s{i}", tip, base))
    branch_refs = {s: git.rev_parse(repo, f"{INTEGRATION}-agents/{s}") for s, _, _ in subs}
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, subs)
    assert all(r.status is MergeStatus.CLEAN for r in records)
    chain = git.out(repo, "rev-list", "--first-parent", "--parents", f"{base}..{queue.tip}").splitlines()
    assert len(chain) == 4
    previous = base
    for line, (sub, tip, _), record in zip(reversed(chain), subs, records, strict=True):
        commit_id, first, second = line.split()
        assert (commit_id, first, second) == (record.commit, previous, tip)
        previous = commit_id
        assert git.trailer(repo, commit_id, "Swarm-Subtask") == sub
        assert git.commit_message(repo, commit_id).startswith(f"Merge subtask {sub}")
    assert {s: git.rev_parse(repo, f"{INTEGRATION}-agents/{s}") for s, _, _ in subs} == branch_refs
    assert before == files


def test_user_checkout_and_index_are_untouched(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"f.txt": TEN, "g.txt": "g\n"})
    (repo / "g.txt").write_text("local edit\n")
    (repo / "untracked.txt").write_text("mine\n")
    git.run(repo, "add", "g.txt")

    def snapshot() -> tuple[str, str, str, bytes]:
        status = git.out(repo, "status", "--porcelain")
        index = (repo / ".git" / "index").read_bytes()
        return git.head_commit(repo), git.current_branch(repo) or "", status, index

    before = snapshot()
    x = agent(repo, base, "x", {"f.txt": edit_lines(TEN, {2: "x2"})})
    y = agent(repo, base, "y", {"f.txt": edit_lines(TEN, {2: "y2"}), "g.txt": None})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].status is MergeStatus.CONFLICTED
    assert snapshot() == before
    assert (repo / "g.txt").read_text() == "local edit\n"


def test_prediction_never_misses_what_the_queue_meets(tmp_path: Path) -> None:
    """Random agents on a few shared files: every conflicted path was predicted."""
    rng = random.Random(7)
    base_files = {f"f{i}.txt": "".join(f"{rng.choice('abc')}{k}\n" for k in range(12)) for i in range(3)}
    repo, base = setup(tmp_path, base_files)
    subs = []
    for n in range(6):
        changes: dict[str, Content] = {}
        for path in rng.sample(sorted(base_files), 2):
            changes[path] = "".join(random_edit(rng, base_files[path].splitlines(keepends=True), "xyz"))
        subs.append((f"s{n}", agent(repo, base, f"s{n}", changes), base))
    queue = make_queue(repo, base)
    for sub, tip, start in subs:
        before = queue.tip
        truth = git.merge_tree(repo, before, tip)
        record = queue.merge(sub, tip, start, 0)
        assert set(truth.conflicted_paths) <= set(record.predicted_conflicts)
        assert {c.path for c in record.conflicts} <= set(truth.conflicted_paths)
    check_invariants(repo, queue, [])


# --- merge_branches (the CLI's `ci-swarm merge`) -----------------------------------------------------


def test_merge_branches_reads_trailers_and_names(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": TEN})
    base = git.head_commit(repo)
    branch(repo, "feature/alpha", commit(repo, base, {"a.txt": "a\n"}))
    tagged = commit(repo, base, {"f.txt": edit_lines(TEN, {1: "b"})}, subtask="beta-id", role="tester")
    branch(repo, "work/beta", tagged)
    branch(repo, "other/alpha", commit(repo, base, {"c.txt": "c\n"}))
    tip, records, rows = merge_branches(
        repo, ["feature/alpha", "work/beta", "other/alpha"], "main", "swarm/merge", MergePolicy()
    )
    assert [r.subtask for r in records] == ["alpha", "beta-id", "other/alpha"]
    assert [r.order for r in records] == [1, 2, 3]
    assert git.rev_parse(repo, "swarm/merge") == tip
    assert git.commit_message(repo, records[1].commit).startswith("Merge subtask beta-id (tester)")
    assert git.commit_message(repo, records[0].commit).startswith("Merge subtask alpha (agent)")
    assert rows == ()
    assert sorted(git.tree_files(repo, tip)) == ["a.txt", "c.txt", "f.txt"]


def test_merge_branches_refuses_unknown_branch_and_existing_integration(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": TEN})
    base = git.head_commit(repo)
    branch(repo, "ok", commit(repo, base, {"a.txt": "a\n"}))
    with pytest.raises(RepoError, match="unknown branch 'nope'"):
        merge_branches(repo, ["ok", "nope"], "main", "swarm/m", MergePolicy())
    assert not git.branch_exists(repo, "swarm/m")
    merge_branches(repo, ["ok"], "main", "swarm/m", MergePolicy())
    with pytest.raises(RepoError, match="already exists"):
        merge_branches(repo, ["ok"], "main", "swarm/m", MergePolicy())


def test_merge_command_starts_at_most_three_git_processes_per_merge(tmp_path: Path) -> None:
    """32 branches through ``ci-swarm merge``'s merge phase, every git process counted at git.py's runner:
    merge-tree and commit-tree per merge, the rest once per run (no per-merge merge-base, rev-parse, log,
    diff or update-ref)."""
    files = {f"d{i % 4}/f{i}.txt": lines(12) for i in range(32)}
    repo = make_repo(tmp_path / "repo", files)
    base = git.head_commit(repo)
    names = []
    for i in range(32):
        edit = {f"d{i % 4}/f{i}.txt": edit_lines(lines(12), {5: f"agent {i}"})}
        names.append(f"agents/s{i:02}")
        branch(repo, names[-1], commit(repo, base, edit, subtask=f"s{i:02}", role="coder"))
    with git.counting() as counts:
        tip, records, _ = merge_branches(repo, names, "main", "swarm/counted", MergePolicy())
    assert sum(counts.values()) <= 3 * 32, counts
    assert counts["merge-tree"] == counts["commit-tree"] == 32
    per_run = {sub: n for sub, n in counts.items() if sub not in ("merge-tree", "commit-tree")}
    assert all(n <= 2 for n in per_run.values()), per_run  # rev-parse: the base and the new branch
    assert [r.subtask for r in records] == [f"s{i:02}" for i in range(32)]
    assert all(r.status is MergeStatus.CLEAN for r in records)
    for i in range(32):
        assert f"agent {i}\n" in (read(repo, tip, f"d{i % 4}/f{i}.txt") or "")
    assert git.rev_parse(repo, "swarm/counted") == tip


def test_merge_report_lists_each_branchs_files_as_git_does(tmp_path: Path) -> None:
    """The report's files come from the merge's own diff: the same paths, in the same order, as
    ``git diff --name-only --no-renames`` (a rename by both names, a deletion, a mode change)."""
    base_files = {"z.txt": TEN, "old/name.txt": lines(30), "gone.txt": "x\n", "run.sh": "echo\n"}
    repo = make_repo(tmp_path / "repo", base_files)
    base = git.head_commit(repo)
    changes: dict[str, Content] = {"old/name.txt": None, "new/name.txt": edit_lines(lines(30), {3: "c"})}
    changes |= {"gone.txt": None, "run.sh": ("100755", "echo\n"), "a b.txt": "new\n", "é.txt": "e\n"}
    tip = branch(repo, "agents/many", commit(repo, base, changes, subtask="many"))
    report = merge_report(repo, ["agents/many", "agents/many"], "main", "swarm/files", MergePolicy())
    expected = git.changed_files(repo, base, tip)
    assert "new/name.txt" in expected and "old/name.txt" in expected
    assert [s.files for s in report.subtasks] == [expected, expected]
    assert [s.id for s in report.subtasks] == ["many", "agents/many"]  # the colliding id: the full name


def test_merge_command_finds_each_branchs_start_as_merge_base_does(tmp_path: Path) -> None:
    """Starts read for every branch at once agree with ``git merge-base`` per branch: on the base, below
    it, behind it, through a merge, and no shared history at all (refused, naming the branch)."""
    repo = make_repo(tmp_path / "repo", {"f.txt": TEN})
    root = git.head_commit(repo)
    old = commit(repo, root, {"o.txt": "o\n"})
    base = commit(repo, old, {"b.txt": "b\n"})
    on_base = commit(repo, base, {"a.txt": "a\n"})
    below = commit(repo, old, {"c.txt": "c\n"})
    merged = commit(repo, on_base, {"m.txt": "m\n"}, parents=[on_base, below])
    chain = commit(repo, commit(repo, on_base, {"x.txt": "x\n"}), {"y.txt": "y\n"})
    tips = [on_base, below, old, base, merged, chain]
    starts = git.merge_bases_with(repo, base, tips)
    assert starts == {t: git.merge_base(repo, base, t) for t in tips}
    assert starts[below] == old and starts[old] == old and starts[merged] == base
    lonely = git.commit_tree(repo, git.tree_of(repo, base), [], "unrelated\n", git.SWARM_IDENTITY)
    branch(repo, "lonely", lonely)
    assert git.merge_bases_with(repo, base, [lonely]) == {lonely: None}
    with pytest.raises(RepoError, match="'lonely' shares no history"):
        merge_branches(repo, ["lonely"], base, "swarm/lonely", MergePolicy())
    assert not git.branch_exists(repo, "swarm/lonely")


def test_branches_read_at_once_agree_with_one_question_each(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": TEN})
    base = git.head_commit(repo)
    one = branch(repo, "agents/one", commit(repo, base, {"a.txt": "a\n"}, subtask="first", role="tester"))
    two = branch(repo, "agents/two", commit(repo, base, {"b.txt": "b\n"}))
    git.run(repo, "tag", "-a", "-m", "t", "v1", two, env=git.SWARM_IDENTITY.env())
    names = ["agents/one", "v1", "main", "nope", "agents/one~1", f"{base}^{{tree}}", "agents/two"]
    assert git.resolve_commits(repo, names) == {n: git.try_rev_parse(repo, n) for n in names}
    keys = ("Swarm-Subtask", "Swarm-Role")
    assert git.trailers(repo, [one, two, one], keys) == {
        c: tuple(git.trailer(repo, c, k) for k in keys) for c in (one, two)
    }


def test_a_moved_integration_branch_fails_that_merge_only(tmp_path: Path) -> None:
    """The compare-and-swap stays per merge through the long-lived ``update-ref --stdin``: a branch moved
    behind the queue's back fails the landing with git's reason and is left where it was; the queue's next
    landing (from the branch's real tip) goes through."""
    repo, base = setup(tmp_path, {"f.txt": TEN})
    queue = make_queue(repo, base)
    first = agent(repo, base, "s1", {"a.txt": "a\n"})
    queue.merge("s1", first, base, 1)
    pending = queue.attempt("s2", agent(repo, base, "s2", {"b.txt": "b\n"}), base, 2)
    elsewhere = commit(repo, base, {"c.txt": "c\n"})
    git.update_ref(repo, f"refs/heads/{INTEGRATION}", elsewhere)
    with pytest.raises(GitError, match="cannot lock ref"):
        queue.land(pending)
    assert git.rev_parse(repo, INTEGRATION) == elsewhere
    git.update_ref(repo, f"refs/heads/{INTEGRATION}", queue.tip)
    record = queue.land(pending)
    assert git.rev_parse(repo, INTEGRATION) == record.commit == queue.tip
    queue.close()
    assert queue.merge("s3", agent(repo, base, "s3", {"d.txt": "d\n"}), base, 3).status is MergeStatus.CLEAN


def test_queue_needs_the_integration_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": TEN})
    base = git.head_commit(repo)
    with pytest.raises(RepoError, match="does not exist"):
        MergeQueue(repo, "swarm/missing", base, MergePolicy(), {})


# --- the diff3 parser ---------------------------------------------------------------------------------


def test_parse_diff3_rebuilds_git_merge_file_ours_and_theirs(tmp_path: Path) -> None:
    """Choosing every block's ours (theirs) side reproduces ``merge-file --ours`` (``--theirs``)."""
    rng = random.Random(11)
    repo = make_repo(tmp_path / "repo", {"f.txt": "x\n"})
    labels = ("o-1", "b-1", "t-1")
    blocks = 0
    for case in range(60):
        eol = "\r\n" if case % 3 == 0 else "\n"
        base_lines = [f"{rng.choice('abcd')}{eol}" for _ in range(rng.randint(0, 8))]
        texts = [base_lines, random_edit(rng, base_lines, "abxy"), random_edit(rng, base_lines, "abzy")]
        raw = ["".join(t).replace("\n", eol).replace("\r\r", "\r") for t in texts]
        if case % 4 == 0:
            raw = [t.removesuffix(eol) for t in raw]
        base_b, ours_b, theirs_b = (t.encode() for t in raw)
        merged = git.merge_file_diff3(repo, ours_b, base_b, theirs_b, labels, MARKER_SIZE)
        segments = parse_diff3(merged, labels, MARKER_SIZE)
        assert segments is not None
        segments = fix_eof(segments, Block(ours_b, base_b, theirs_b))
        blocks += sum(isinstance(s, Block) for s in segments)
        for side, favor in ((0, "ours"), (1, "theirs")):
            rebuilt = b"".join(
                s if isinstance(s, bytes) else (s.ours if side == 0 else s.theirs) for s in segments
            )
            expected, _ = git.merge_file(repo, ours_b, base_b, theirs_b, favor=favor)
            assert rebuilt == expected, (case, favor)
    assert blocks > 20


def test_parse_diff3_refuses_ambiguous_markers() -> None:
    labels = ("o", "b", "t")
    sep = b"=" * 5
    good = b"x\n<<<<< o\nA\n||||| b\nB\n" + sep + b"\nC\n>>>>> t\ny\n"
    assert parse_diff3(good, labels, 5) == [b"x\n", Block(b"A\n", b"B\n", b"C\n"), b"y\n"]
    assert parse_diff3(good.replace(b"C\n", sep + b"\n"), labels, 5) is None
    assert parse_diff3(b"<<<<< o\nA\n", labels, 5) is None
    assert parse_diff3(sep + b"\n", labels, 5) is None


def test_file_added_in_a_renamed_directory_follows_the_rename(tmp_path: Path) -> None:
    repo, base = setup(tmp_path, {"dir1/a.txt": lines(20), "dir1/b.txt": lines(21, "b")})
    moved: dict[str, Content] = {"dir1/a.txt": None, "dir1/b.txt": None}
    moved |= {"dir2/a.txt": lines(20), "dir2/b.txt": lines(21, "b")}
    x = agent(repo, base, "x", moved)
    y = agent(repo, base, "y", {"dir1/c.txt": "new\n"})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    assert records[1].predicted_conflicts == ("dir1/c.txt",)  # predicted conservatively
    assert records[1].status is MergeStatus.CLEAN and records[1].conflicts == ()
    assert git.tree_files(repo, queue.tip) == ("dir2/a.txt", "dir2/b.txt", "dir2/c.txt")


def test_rename_with_a_conflicting_edit_is_resolved_hunk_by_hunk_at_the_new_name(tmp_path: Path) -> None:
    body = lines(30)
    repo, base = setup(tmp_path, {"old.py": body})
    x = agent(repo, base, "x", {"old.py": None, "new.py": edit_lines(body, {5: "x5"})})
    y = agent(repo, base, "y", {"old.py": edit_lines(body, {5: "y5", 20: "y20"})})
    queue = make_queue(repo, base)
    records = merge_all(repo, queue, [("x", x, base), ("y", y, base)])
    (conflict,) = records[1].conflicts
    assert (conflict.path, conflict.kind, conflict.kept_subtask, conflict.lines) == (
        "new.py",
        ConflictKind.CONTENT,
        "x",
        (5, 5),
    )
    assert read(repo, queue.tip, "new.py") == edit_lines(body, {5: "x5", 20: "y20"})
    assert records[1].predicted_conflicts == ("new.py", "old.py")  # git reports new.py


def test_stages_are_named_as_git_numbers_them_and_sides_swap() -> None:
    assert (Stage.BASE, Stage.OURS, Stage.THEIRS) == (1, 2, 3)
    assert other(Stage.OURS) is Stage.THEIRS
    assert other(Stage.THEIRS) is Stage.OURS
    with pytest.raises(ValueError, match="base"):
        other(Stage.BASE)


# --- merge.insertions in plans and config ------------------------------------------------------------


def test_insertions_policy_is_read_from_plans_and_config(tmp_path: Path) -> None:
    sub = {"id": "a", "title": "a"}
    assert plan_from_dict({"task": "t", "subtasks": [sub]}, source="p").merge.insertions is Insertions.BOTH
    keep = plan_from_dict({"task": "t", "subtasks": [sub], "merge": {"insertions": "keep"}}, source="p")
    assert keep.merge.insertions is Insertions.KEEP
    with pytest.raises(PlanError, match=r"merge\.insertions"):
        plan_from_dict({"task": "t", "subtasks": [sub], "merge": {"insertions": "mix"}}, source="p")
    path = tmp_path / "ci-swarm.yml"
    path.write_text("merge: {insertions: keep}\n")
    assert load_config(path).merge.insertions is Insertions.KEEP
    path.write_text("merge: {prefer: first}\n")
    assert load_config(path).merge.insertions is Insertions.BOTH
    path.write_text("merge: {insertions: sometimes}\n")
    with pytest.raises(ConfigError, match="insertions"):
        load_config(path)


# --- the merge-replay benchmark on a tiny history ------------------------------------------------------


def test_replay_benchmark_compares_a_real_merge_with_git_and_the_human(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "corpus" / "proj", {"f.txt": TEN, "g.txt": TEN})
    base = git.head_commit(repo)
    x = commit(repo, base, {"f.txt": edit_lines(TEN, {5: "line 5\nx after 5"})})
    y = commit(repo, base, {"f.txt": edit_lines(TEN, {5: "line 5\ny after 5"}), "g.txt": "g\n"})
    human = commit(repo, x, {"f.txt": edit_lines(TEN, {5: "line 5\nx after 5\ny after 5"}), "g.txt": "g\n"})
    merge = commit(repo, x, {"f.txt": git.read_blob(repo, f"{human}:f.txt"), "g.txt": "g\n"}, parents=[x, y])
    clean = commit(repo, merge, {"g.txt": "g2\n"}, parents=[merge, commit(repo, merge, {"f.txt": "new\n"})])
    git.run(repo, "update-ref", "refs/heads/main", commit(repo, clean, {"g.txt": "g3\n"}))
    assert bench_replay.main([str(tmp_path / "nowhere")]) == 0
    assert "merge replay skipped: no corpus" in capsys.readouterr().out
    (every, conflicted) = bench_replay.run_repo(
        bench_replay.repositories(tmp_path / "corpus")[0], tmp_path / "work", 5, 1
    )
    assert (every.merges, every.clean, every.conflicted, every.clean_identical) == (2, 1, 1, 1)
    assert (conflicted.merges, conflicted.agree, conflicted.git_files, conflicted.false_clean) == (1, 1, 1, 0)
    assert (conflicted.human_both, conflicted.human_keep, conflicted.joined) == (1, 0, 1)
    assert (repo / ".git" / "refs" / "heads" / "main").exists() and not git.branch_exists(
        repo, "replay/0-keep"
    )

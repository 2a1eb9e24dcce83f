"""Overlap prediction: diff parsing, git's adjacency rules, and agreement with real git merges."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.errors import GitError
from ci_swarm.models import Overlap, OverlapKind
from ci_swarm.overlap import (
    ChangeIndex,
    FileChange,
    FileStatus,
    Region,
    changes,
    classify,
    conflicting,
    overlaps,
    predict,
    unquote,
)
from tests.fixtures import Content, commit, make_repo
from tests.merge_helpers import edit_lines, lines, random_edit

TEN = lines(10)
D, T, OV = OverlapKind.DISJOINT, OverlapKind.TOUCHING, OverlapKind.OVERLAPPING


def two_sides(
    tmp_path: Path, base: Mapping[str, str | bytes], a: Mapping[str, Content], b: Mapping[str, Content]
) -> tuple[Path, str, str, str]:
    repo = make_repo(tmp_path / "repo", base)
    base_commit = git.head_commit(repo)
    return repo, base_commit, commit(repo, base_commit, a), commit(repo, base_commit, b)


def change_of(repo: Path, base: str, tip: str, path: str) -> FileChange:
    return changes(git.merge_diff(repo, base, tip))[path]


def git_conflicts(repo: Path, a: str, b: str) -> set[str]:
    return set(git.merge_tree(repo, a, b).conflicted_paths)


# --- parsing ------------------------------------------------------------------------------------------


def test_regions_are_in_base_coordinates(tmp_path: Path) -> None:
    text = edit_lines(TEN, {2: "two", 6: None, 7: None})
    text = text.replace("line 9\n", "line 9\nnew a\nnew b\n")
    repo, base, tip, _ = two_sides(tmp_path, {"f.txt": TEN}, {"f.txt": text}, {})
    change = change_of(repo, base, tip, "f.txt")
    assert change.status is FileStatus.MODIFIED and change.path == change.new_path == "f.txt"
    assert change.regions == (
        Region(1, ("line 2\n",), ("two\n",)),
        Region(5, ("line 6\n", "line 7\n"), ()),
        Region(9, (), ("new a\n", "new b\n")),  # inserted before base line 10 (0-based 9)
    )
    assert change.regions[2].end == 9 and change.regions[1].end == 7
    assert change.added_lines == ("two\n", "new a\n", "new b\n")
    assert len(change.old_oid) == 40 and len(change.new_oid) == 40 and change.new_mode == "100644"


def test_insertion_at_the_top_and_missing_final_newline(tmp_path: Path) -> None:
    repo, base, tip, _ = two_sides(tmp_path, {"f.txt": "a\nb"}, {"f.txt": "top\na\nb\n"}, {})
    assert change_of(repo, base, tip, "f.txt").regions == (
        Region(0, (), ("top\n",)),
        Region(1, ("b",), ("b\n",)),  # "b" without newline is a different line
    )


def test_crlf_lines_keep_their_endings(tmp_path: Path) -> None:
    crlf = "a\r\nb\r\nc\r\n"
    repo, base, tip, _ = two_sides(tmp_path, {"w.txt": crlf}, {"w.txt": crlf.replace("b", "B")}, {})
    assert change_of(repo, base, tip, "w.txt").regions == (Region(1, ("b\r\n",), ("B\r\n",)),)


def test_file_statuses_modes_and_renames(tmp_path: Path) -> None:
    base: dict[str, str | bytes] = {
        "gone.txt": "x\n",
        "old.py": lines(30),
        "tool.sh": "echo\n",
        "img.bin": b"\0\1",
    }
    a: dict[str, Content] = {"gone.txt": None, "old.py": None, "new.py": lines(30), "added.txt": "n\n"}
    a |= {"tool.sh": ("100755", "echo\n"), "img.bin": b"\0\2"}
    repo, base_commit, tip, _ = two_sides(tmp_path, base, a, {})
    found = changes(git.merge_diff(repo, base_commit, tip))
    assert found["gone.txt"].status is FileStatus.DELETED and found["gone.txt"].new_path == ""
    assert found["added.txt"].status is FileStatus.ADDED and found["added.txt"].old_mode == ""
    renamed = found["old.py"]
    assert found["new.py"] is renamed
    assert (renamed.status, renamed.path, renamed.new_path, renamed.regions) == (
        FileStatus.RENAMED,
        "old.py",
        "new.py",
        (),
    )
    assert (found["tool.sh"].old_mode, found["tool.sh"].new_mode) == ("100644", "100755")
    assert found["img.bin"].binary and found["img.bin"].regions == ()


def test_quoted_and_non_ascii_paths(tmp_path: Path) -> None:
    names = ["tab\there.txt", 'quote"d.txt', "back\\slash.txt", "données/été.txt", "a b/c d.txt"]
    repo, base, tip, _ = two_sides(tmp_path, dict.fromkeys(names, "x\n"), dict.fromkeys(names, "y\n"), {})
    assert sorted(changes(git.merge_diff(repo, base, tip))) == sorted(names)


def test_unquote() -> None:
    assert unquote('"a\\303\\251\\t\\"q\\\\"') == 'aé\t"q\\'
    assert unquote("plain name") == "plain name"


# --- classification: git's adjacency rules ------------------------------------------------------------

RULES = [
    ("one unchanged line between", {3: "a3"}, {5: "b5"}, D),
    ("edit line 3 vs edit line 4", {3: "a3"}, {4: "b4"}, T),
    ("deletion next to an edit", {3: None}, {4: "b4"}, T),
    ("same line", {5: "a5"}, {5: "b5"}, OV),
    ("ranges overlap", {4: "a4", 5: "a5", 6: "a6"}, {5: "b5"}, OV),
    ("identical edits", {5: "same"}, {5: "same"}, D),
    ("identical edit plus an adjacent one", {5: "same"}, {5: "same", 6: "b6"}, OV),
]


@pytest.mark.parametrize(("name", "a", "b", "kind"), RULES, ids=[r[0] for r in RULES])
def test_line_rules_match_git(
    tmp_path: Path, name: str, a: dict[int, str | None], b: dict[int, str | None], kind: OverlapKind
) -> None:
    base = {"f.txt": TEN}
    repo, base_commit, ta, tb = two_sides(
        tmp_path, base, {"f.txt": edit_lines(TEN, a)}, {"f.txt": edit_lines(TEN, b)}
    )
    got = classify(change_of(repo, base_commit, ta, "f.txt"), change_of(repo, base_commit, tb, "f.txt"))
    assert got is kind
    assert ("f.txt" in git_conflicts(repo, ta, tb)) == (kind is not D)


def _insert_after(n: int, text: str) -> str:
    return TEN.replace(f"line {n}\n", f"line {n}\n{text}\n")


INSERTIONS = [
    ("two insertions at one point", _insert_after(3, "a"), _insert_after(3, "b"), T),
    ("insertion next to an edit", _insert_after(3, "a"), edit_lines(TEN, {4: "b4"}), T),
    ("insertion after an edited line", _insert_after(3, "a"), edit_lines(TEN, {3: "b3"}), T),
    ("insertion one line away", _insert_after(3, "a"), edit_lines(TEN, {5: "b5"}), D),
    ("insertion inside a replaced range", _insert_after(4, "a"), edit_lines(TEN, {4: "b4", 5: "b5"}), OV),
    ("identical insertions", _insert_after(3, "same"), _insert_after(3, "same"), D),
]


@pytest.mark.parametrize(("name", "a", "b", "kind"), INSERTIONS, ids=[r[0] for r in INSERTIONS])
def test_insertion_rules_match_git(tmp_path: Path, name: str, a: str, b: str, kind: OverlapKind) -> None:
    repo, base_commit, ta, tb = two_sides(tmp_path, {"f.txt": TEN}, {"f.txt": a}, {"f.txt": b})
    got = classify(change_of(repo, base_commit, ta, "f.txt"), change_of(repo, base_commit, tb, "f.txt"))
    assert got is kind
    assert ("f.txt" in git_conflicts(repo, ta, tb)) == (kind is not D)


def test_refined_conflict_with_equal_sides_is_clean_like_git(tmp_path: Path) -> None:
    """Regions that touch but give the same text on both sides: git refines the conflict away."""
    base = "a\nb\nb\na\nb\nb\nb\na\nu8"
    a_text, b_text = "a\nb\nb\nb\nb\nb\na\nu8", "a\nb\nb\nb\nb\nb\na\nu8\nq"
    repo, base_commit, ta, tb = two_sides(tmp_path, {"f.txt": base}, {"f.txt": a_text}, {"f.txt": b_text})
    ca, cb = change_of(repo, base_commit, ta, "f.txt"), change_of(repo, base_commit, tb, "f.txt")
    assert ca.regions[0].start <= cb.regions[0].end and cb.regions[0].start <= ca.regions[0].end
    assert classify(ca, cb) is D
    assert git_conflicts(repo, ta, tb) == set()


WHOLE_FILE = [
    ("add/add", {"f.txt": TEN}, {"n.txt": "a\n"}, {"n.txt": "b\n"}, OV, True),
    ("add/add identical", {"f.txt": TEN}, {"n.txt": "a\n"}, {"n.txt": "a\n"}, D, False),
    ("modify/delete", {"f.txt": TEN}, {"f.txt": "x\n"}, {"f.txt": None}, OV, True),
    ("both delete", {"f.txt": TEN}, {"f.txt": None}, {"f.txt": None}, D, False),
    ("binary", {"f.bin": b"\0a"}, {"f.bin": b"\0b"}, {"f.bin": b"\0c"}, OV, True),
    ("symlinks", {"l": ("120000", "x")}, {"l": ("120000", "y")}, {"l": ("120000", "z")}, OV, True),
    (
        "mode and content",
        {"f.sh": TEN},
        {"f.sh": ("100755", TEN)},
        {"f.sh": edit_lines(TEN, {1: "b"})},
        D,
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "base", "a", "b", "kind", "conflicts"), WHOLE_FILE, ids=[w[0] for w in WHOLE_FILE]
)
def test_whole_file_cases_match_git(
    tmp_path: Path,
    name: str,
    base: dict[str, Content],
    a: dict[str, Content],
    b: dict[str, Content],
    kind: OverlapKind,
    conflicts: bool,
) -> None:
    plain = {k: v for k, v in base.items() if isinstance(v, str | bytes)}
    repo = make_repo(tmp_path / "repo", plain or {"keep.txt": "k\n"})
    base_commit = git.head_commit(repo)
    start = commit(repo, base_commit, {k: v for k, v in base.items() if k not in plain})
    ta, tb = commit(repo, start, a), commit(repo, start, b)
    rows = predict(repo, start, ta, tb, "a", "b")
    assert [(r.a, r.b, r.kind) for r in rows] == [("a", "b", kind)]
    assert bool(git_conflicts(repo, ta, tb)) is conflicts


def test_renames(tmp_path: Path) -> None:
    body = lines(30)
    repo, base, renamed, edited = two_sides(
        tmp_path, {"old.py": body}, {"old.py": None, "new.py": body}, {"old.py": edit_lines(body, {9: "b"})}
    )
    # a renamed file is named by its new path (where git reports it) and its old path
    assert predict(repo, base, renamed, edited, "a", "b") == (
        Overlap("a", "b", "new.py", D),
        Overlap("a", "b", "old.py", D),
    )
    assert git_conflicts(repo, renamed, edited) == set()
    other = commit(repo, base, {"old.py": None, "other.py": body})
    deleted = commit(repo, base, {"old.py": None})
    assert conflicting(predict(repo, base, renamed, other, "a", "b")) == ("new.py", "old.py", "other.py")
    assert conflicting(predict(repo, base, renamed, deleted, "a", "b")) == ("new.py", "old.py")
    assert git_conflicts(repo, renamed, other) == {"new.py", "old.py", "other.py"}
    assert git_conflicts(repo, renamed, deleted) == {"new.py"}
    # the same rename on both sides: one file, named by both names, clean
    again = commit(repo, base, {"old.py": None, "new.py": body})
    assert predict(repo, base, renamed, again, "a", "b") == (
        Overlap("a", "b", "new.py", D),
        Overlap("a", "b", "old.py", D),
    )


def test_a_conflict_in_a_renamed_file_is_predicted_under_the_new_name(tmp_path: Path) -> None:
    body = lines(30)
    repo, base, renamed, edited = two_sides(
        tmp_path,
        {"old.py": body},
        {"old.py": None, "pkg/new.py": edit_lines(body, {9: "a"})},
        {"old.py": edit_lines(body, {9: "b"})},
    )
    assert git_conflicts(repo, renamed, edited) == {"pkg/new.py"}
    assert conflicting(predict(repo, base, renamed, edited, "a", "b")) == ("old.py", "pkg/new.py")
    assert conflicting(predict(repo, base, edited, renamed, "b", "a")) == ("old.py", "pkg/new.py")


def test_file_directory_and_directory_rename_collisions(tmp_path: Path) -> None:
    repo, base, file_side, dir_side = two_sides(tmp_path, {"f.txt": TEN}, {"d": "file\n"}, {"d/x.txt": "x\n"})
    assert predict(repo, base, file_side, dir_side, "a", "b") == (Overlap("a", "b", "d", OV),)
    assert predict(repo, base, dir_side, file_side, "a", "b") == (Overlap("a", "b", "d", OV),)
    assert git_conflicts(repo, file_side, dir_side)
    repo2, base2, moved, added = two_sides(
        tmp_path / "two",
        {"src/a.py": lines(20), "src/b.py": lines(20, "b")},
        {"src/a.py": None, "src/b.py": None, "lib/a.py": lines(20), "lib/b.py": lines(20, "b")},
        {"src/c.py": "new\n"},
    )
    assert conflicting(predict(repo2, base2, moved, added, "a", "b")) == ("src/c.py",)
    assert git_conflicts(repo2, moved, added)


def test_conflicting_keeps_order_and_drops_repeats() -> None:
    rows = [
        Overlap("a", "b", "x", T),
        Overlap("a", "c", "y", D),
        Overlap("b", "c", "x", OV),
        Overlap("a", "b", "z", OV),
    ]
    assert conflicting(rows) == ("x", "z")


# --- the property: git's conflicts are never predicted clean ---------------------------------------------


def _case(rng: random.Random) -> tuple[str, str, str]:
    alphabet = rng.choice(["ab", "abc", "abcdefgh"])
    base = [
        f"{rng.choice(alphabet)}\n" if rng.random() < 0.6 else f"u{k}\n" for k in range(rng.randint(0, 12))
    ]
    a = random_edit(rng, base, alphabet)
    roll = rng.random()
    if roll < 0.1:
        b = list(a)  # identical edits
    elif roll < 0.3:
        b = list(a)
        b.insert(rng.choice([0, len(b)]), rng.choice(["a\n", "q\n"]))  # the same edit and one more
    else:
        b = random_edit(rng, base, alphabet)
    eol = "\r\n" if rng.random() < 0.15 else "\n"
    texts = ["".join(t).replace("\n", eol) for t in (base, a, b)]
    if rng.random() < 0.15:
        texts = [t.removesuffix(eol) for t in texts]
    return texts[0], texts[1], texts[2]


def test_predictor_agrees_with_git_on_random_edit_pairs(tmp_path: Path) -> None:
    """200 generated edit pairs (fixed seed): the prediction equals git's verdict, for merge-tree
    (histogram diffs) and for merge-file (myers diffs); in particular a git conflict is never predicted
    clean."""
    rng = random.Random(20240611)
    cases = [_case(rng) for _ in range(200)]
    names = [f"c{i:03}.txt" for i in range(len(cases))]
    repo = make_repo(tmp_path / "repo", {n: c[0] for n, c in zip(names, cases, strict=True)})
    base = git.head_commit(repo)
    ta = commit(repo, base, {n: c[1] for n, c in zip(names, cases, strict=True)})
    tb = commit(repo, base, {n: c[2] for n, c in zip(names, cases, strict=True)})
    truth = git_conflicts(repo, ta, tb)
    kinds = {}
    for algorithm in ("histogram", "myers"):
        ca = changes(git.merge_diff(repo, base, ta, algorithm=algorithm))
        cb = changes(git.merge_diff(repo, base, tb, algorithm=algorithm))
        kinds[algorithm] = {n: classify(ca[n], cb[n]) if n in ca and n in cb else D for n in names}
    predicted = {n for n, k in kinds["histogram"].items() if k is not D}
    assert truth - predicted == set()  # never predicted clean when git conflicts
    assert predicted == truth  # and, in fact, exactly git's verdict
    work = tmp_path / "mf"
    work.mkdir()
    for name, (base_text, a_text, b_text) in zip(names, cases, strict=True):
        for label, text in (("o", a_text), ("b", base_text), ("t", b_text)):
            (work / label).write_bytes(text.encode())
        code = subprocess.run(
            ["git", "merge-file", "-p", "o", "b", "t"], cwd=work, capture_output=True
        ).returncode
        assert (code > 0) == (kinds["myers"][name] is not D), name
    counts = {k: list(kinds["histogram"].values()).count(k) for k in (D, T, OV)}
    assert min(counts.values()) >= 15, counts  # the generator exercises every kind


def _tail_or_rename_case(rng: random.Random, k: int) -> tuple[str, str, str, bool]:
    """(base, a, b, a renames the file): every case gets a long common tail of repeated lines (git diff
    -U0 would trim it, the merge does not); one in three is renamed on side a (rename detection)."""
    alphabet = rng.choice(["ab", "abc"])
    head = [
        f"{rng.choice(alphabet)}\n" if rng.random() < 0.7 else f"u{k}-{n}\n"
        for n in range(rng.randint(4, 20))
    ]
    tail = [f"{rng.choice(alphabet)}\n" for _ in range(rng.randint(600, 1400))]
    a = random_edit(rng, head, alphabet) + tail
    b = random_edit(rng, head, alphabet) + tail if rng.random() < 0.8 else list(a)
    return "".join(head + tail), "".join(a), "".join(b), rng.random() < 0.34


def test_predictor_never_predicts_git_conflicts_clean_with_renames_and_long_tails(tmp_path: Path) -> None:
    """120 generated pairs (fixed seed) with long common tails, a third of them renamed on one side: every
    file git reports conflicted is predicted, under git's (post-rename) name; the predicted post-merge
    names are exactly git's."""
    rng = random.Random(20261207)
    cases = [_tail_or_rename_case(rng, k) for k in range(120)]
    names = [f"c{i:03}.txt" for i in range(len(cases))]
    renamed = {n: f"moved/{n}" for n, c in zip(names, cases, strict=True) if c[3]}
    repo = make_repo(tmp_path / "repo", {n: c[0] for n, c in zip(names, cases, strict=True)})
    base = git.head_commit(repo)
    a_files: dict[str, Content] = {n: c[1] for n, c in zip(names, cases, strict=True)}
    for old, new in renamed.items():
        a_files[new], a_files[old] = a_files[old], None
    ta = commit(repo, base, a_files)
    tb = commit(repo, base, {n: c[2] for n, c in zip(names, cases, strict=True)})
    truth = git_conflicts(repo, ta, tb)
    predicted = set(conflicting(predict(repo, base, ta, tb, "a", "b")))
    assert truth - predicted == set()  # never predicted clean when git conflicts
    assert predicted - set(renamed) == truth  # the old names aside, exactly git's verdict
    assert truth & set(renamed.values())  # the generator makes conflicts in renamed files
    assert len(truth) >= 30 and len(truth) <= 110, len(truth)


# --- the long-lived diff process and the path index (issue #15) ----------------------------------------


def test_long_lived_diffs_are_byte_identical_to_merge_diff(tmp_path: Path) -> None:
    """One ``diff-tree --stdin`` process answers every question with ``merge_diff``'s exact text: renames,
    deletions, an empty file, a mode change, binary data, a symlink, a missing final newline, names git
    quotes, an empty diff; then again after a failed question (an unknown commit) ended it."""
    base_files: dict[str, str | bytes] = {"a.txt": TEN, "old/n.txt": lines(40), "bin.dat": b"\0\1\2"}
    base_files |= {"gone.txt": "x\n", "tab\there.txt": "t\n", "no-eol.txt": "a\nb"}
    repo = make_repo(tmp_path / "repo", base_files)
    base = git.head_commit(repo)
    edits: list[dict[str, Content]] = [
        {"a.txt": edit_lines(TEN, {2: "two", 3: None})},
        {"old/n.txt": None, "new/n.txt": edit_lines(lines(40), {7: "seven"})},
        {"gone.txt": None, "empty.txt": "", "bin.dat": b"\0\3", "no-eol.txt": "a\nB"},
        {"a.txt": ("100755", TEN), "link": ("120000", "a.txt"), 'é "q".txt': "q\n", "tab\there.txt": "T\n"},
        {},
    ]
    tips = [commit(repo, base, e) for e in edits]
    diffs = git.MergeDiffs(repo)
    with git.counting() as counts:
        for a, b in [(base, t) for t in tips] + [(t, base) for t in tips] + [(tips[0], tips[3])]:
            assert diffs.diff(a, b) == git.merge_diff(repo, a, b)
    assert counts["diff-tree"] == 1 and counts["diff"] == 11
    assert diffs.diff(base, base) == ""
    for unknown in ((base, "0" * 39 + "1"), ("0" * 39 + "1", base)):  # the commit, or its parent
        with pytest.raises(GitError):
            diffs.diff(*unknown)
    assert diffs.diff(base, tips[1]) == git.merge_diff(repo, base, tips[1])
    assert diffs.diff("main", tips[0]) == git.merge_diff(repo, base, tips[0])  # a name: answered by git diff
    diffs.close()


def _random_change(rng: random.Random, k: int) -> dict[str, FileChange]:
    """A change to a few paths of a small tree (so that changes meet): edits, additions, deletions,
    renames within and across directories, a file where others have a directory."""
    dirs = ["", "a/", "a/b/", "c/", "a/b/d/"]
    found: dict[str, FileChange] = {}
    for n in range(rng.randint(1, 4)):
        path = f"{rng.choice(dirs)}{rng.choice('xyz')}" + rng.choice(["", ".txt"])
        if rng.random() < 0.1:
            path = rng.choice(["a", "a/b", "c", "a/b/d"])  # a file where a directory is
        status = rng.choice(list(FileStatus))
        region = Region(rng.randint(0, 5), ("l\n",), (f"k{k}-{n}\n",))
        if status is FileStatus.RENAMED:
            new = f"{rng.choice(dirs)}r{k}.txt"
            change = FileChange(path, new, status, "100644", "100644", "1" * 40, f"{k:040}", False, (region,))
        elif status is FileStatus.DELETED:
            change = FileChange(path, "", status, "100644", "", "1" * 40, "")
        elif status is FileStatus.ADDED:
            change = FileChange(path, path, status, "", "100644", "", f"{k:040}")
        else:
            modes = ("100644", "100644", "1" * 40, f"{k:040}")
            change = FileChange(path, path, status, *modes, regions=(region,))
        for name in change.paths:
            found[name] = change
    return found


def test_path_index_finds_every_pairwise_row_on_many_paths() -> None:
    """The index gives the merge queue exactly the pairwise rows: on 600 random changes of a small tree
    (shared paths, file/directory collisions, directory renames), each new change's rows from the
    index's candidates equal the rows of comparing it with every earlier change."""
    rng = random.Random(15)
    index = ChangeIndex()
    earlier: list[dict[str, FileChange]] = []
    compared = 0
    for k in range(600):
        mine = _random_change(rng, k)
        first = rng.randint(0, len(earlier)) if rng.random() < 0.3 else 0
        pairwise = [r for e in range(first, len(earlier)) for r in overlaps(earlier[e], mine, f"s{e}", "me")]
        chosen = index.candidates(mine, first)
        assert chosen == sorted(chosen) and all(e >= first for e in chosen)
        indexed = [r for e in chosen for r in overlaps(earlier[e], mine, f"s{e}", "me")]
        assert indexed == pairwise
        compared += len(chosen)
        assert index.add(mine) == len(earlier) == len(index) - 1
        earlier.append(mine)
    assert any(r.kind is OV for e in earlier[:50] for r in overlaps(earlier[0], e, "a", "b"))
    assert compared < 600 * 599 // 2  # fewer comparisons than all pairs


def test_path_index_compares_only_changes_that_meet_on_many_paths() -> None:
    """2,000 changes of their own files in 200 directories: a new change to one of those files is compared
    with the one change that named it; one under a directory that another change made a file of, with that
    one; one on a path nobody touched, with none."""
    index = ChangeIndex()
    for k in range(2_000):
        path = f"src/d{k % 200:03}/f{k:04}.py"
        change = FileChange(path, path, FileStatus.MODIFIED, "100644", "100644", "1" * 40, f"{k:040}")
        index.add({path: change})
    index.add({"lib": FileChange("lib", "lib", FileStatus.ADDED, "", "100644", "", "2" * 40)})

    def one(path: str, status: FileStatus = FileStatus.MODIFIED) -> dict[str, FileChange]:
        return {path: FileChange(path, path, status, "100644", "100644", "1" * 40, "3" * 40)}

    assert index.candidates(one("src/d007/f1207.py")) == [1207]
    assert index.candidates(one("src/d007/f1207.py"), first=1208) == []
    assert index.candidates(one("lib/x.py", FileStatus.ADDED)) == [2_000]
    assert index.candidates(one("src/d007/new.py", FileStatus.ADDED)) == []
    assert index.candidates(one("src/d007", FileStatus.ADDED)) == list(range(7, 2_000, 200))

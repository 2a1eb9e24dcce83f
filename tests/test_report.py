"""Report rendering: every field the issue names, in JSON and Markdown."""

from __future__ import annotations

import json

from ci_swarm.models import (
    Conflict,
    ConflictKind,
    MergeRecord,
    MergeStatus,
    Overlap,
    OverlapKind,
    RunReport,
    RunStats,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
)
from ci_swarm.report import mermaid_gantt, to_json, to_markdown


def report() -> RunReport:
    conflict = Conflict("conf.txt", ConflictKind.CONTENT, "b", "a", (3, 3), "x = 2\n", "x = 3\n", "x = 1\n")
    return RunReport(
        run_id="r1",
        task="t",
        repo="/repo",
        base="b" * 40,
        integration_branch="swarm/r1",
        integration_commit="c" * 40,
        stats=RunStats(2.0, 3.0, 1.5, 1.8, 0.9, 2, 2),
        subtasks=(
            SubtaskRecord(
                "a",
                "builder",
                "A",
                SubtaskStatus.SUCCEEDED,
                "swarm/r1-agents/a",
                "b" * 40,
                "d" * 40,
                100.0,
                101.5,
                1.5,
                ("conf.txt",),
                outside_paths=("README.md",),
                usage=Usage(requests=2, input_tokens=10, output_tokens=5, cost_usd=0.01),
            ),
            SubtaskRecord(
                "b",
                "tester",
                "B | pipe",
                SubtaskStatus.FAILED,
                "swarm/r1-agents/b",
                "b" * 40,
                "e" * 40,
                100.2,
                101.7,
                1.5,
                ("conf.txt",),
                error="boom",
            ),
        ),
        merges=(
            MergeRecord("a", 1, MergeStatus.CLEAN, "f" * 40),
            MergeRecord("b", 2, MergeStatus.CONFLICTED, "9" * 40, ("conf.txt",), (conflict,)),
        ),
        overlap=(Overlap("a", "b", "conf.txt", OverlapKind.OVERLAPPING),),
    )


def test_json_has_every_field_the_issue_names() -> None:
    data = json.loads(to_json(report()))
    sub = data["subtasks"][0]
    for key in ("id", "role", "status", "branch", "start_commit", "commit", "started_at", "finished_at",
                "seconds", "files", "error"):  # fmt: skip
        assert key in sub, key
    merge = {"subtask": "b", "order": 2, "status": "conflicted", "commit": "9" * 40}
    assert data["merges"][1] == {**merge, "predicted_conflicts": ["conf.txt"], "conflicts": 1, "seconds": 0.0}
    (conflict,) = data["conflicts"]
    assert conflict["lines"] == [3, 3] and conflict["subtask"] == "b" and conflict["kept_subtask"] == "a"
    assert (conflict["kept_text"], conflict["other_text"], conflict["base_text"]) == ("x = 2\n", "x = 3\n",
                                                                                       "x = 1\n")  # fmt: skip
    assert data["overlap"] == [{"a": "a", "b": "b", "path": "conf.txt", "kind": "overlapping"}]


def test_markdown_tables_gantt_conflicts_and_outside_writes() -> None:
    md = to_markdown(report())
    assert "| `a` | builder | ✅ succeeded | 1 | 1.5s | 15 | $0.0100 |" in md
    assert "1/2 subtasks succeeded · 1 conflict(s) recorded" in md
    assert "`conf.txt` (content, lines 3–3): kept **a**, recorded **b**'s side" in md
    assert "x = 3" in md  # the other side, in full
    assert "### Writes outside owned paths" in md and "| `a` | `README.md` |" in md


def test_gantt_bars_are_milliseconds_since_the_first_start() -> None:
    gantt = mermaid_gantt(report())
    assert "dateFormat x" in gantt
    assert "    a (builder) :a, 0, 1500" in gantt
    assert "    b (tester) :crit, b, 200, 1700" in gantt  # a failed agent's bar is marked

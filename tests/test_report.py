"""Report rendering: every field the issue names, in JSON and Markdown."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace

import pytest
from rich.console import Console

from ci_swarm import __version__
from ci_swarm.models import (
    AgentSpec,
    CheckResult,
    Conflict,
    ConflictKind,
    Culprit,
    Diffstat,
    MergePolicy,
    MergeRecord,
    MergeStatus,
    OnConflict,
    Overlap,
    OverlapKind,
    Repair,
    Resolved,
    RunReport,
    RunStats,
    SerialComparison,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
    Verification,
    VerificationStatus,
)
from ci_swarm.report import mermaid_gantt, print_terminal, summary_lines, to_json, to_markdown
from tests.test_render_gfm import CLOSING, MENTION, rendered


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
    new = {"joined": 0, "resolution": "kept", "repair": None}  # issue #12's fields: no repair tried here
    assert data["merges"][1] == {**merge, "predicted_conflicts": ["conf.txt"], "conflicts": 1, "seconds": 0.0,
                                 **new}  # fmt: skip
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


# --- the Gantt chart against Mermaid's gantt grammar ----------------------------------------------------
# The lexer rules of mermaid's gantt.jison (case-insensitive, first matching rule wins), in its order.
GANTT_LEXER = [
    (r"accTitle\s*:\s*", "acc_title"),
    (r"accDescr\s*:\s*", "acc_descr"),
    (r"accDescr\s*\{\s*", "acc_descr_multiline"),
    (r"%%(?!\{)[^\n]*", None),
    (r"[^}]%%*[^\n]*", None),
    (r"%%*[^\n]*[\n]*", None),
    (r"[\n]+", "NL"),
    (r"\s+", None),
    (r"#[^\n]*", None),
    (r'href[\s]+["]', "href"),
    (r"call[\s]+", "call"),
    (r"click[\s]+", "click"),
    (r"gantt", "gantt"),
    (r"dateFormat\s[^#\n;]+", "dateFormat"),
    (r"inclusiveEndDates", "inclusiveEndDates"),
    (r"topAxis", "topAxis"),
    (r"axisFormat\s[^#\n;]+", "axisFormat"),
    (r"tickInterval\s[^#\n;]+", "tickInterval"),
    (r"includes\s[^#\n;]+", "includes"),
    (r"excludes\s[^#\n;]+", "excludes"),
    (r"todayMarker\s[^\n;]+", "todayMarker"),
    (r"weekday\s[^#\n;]+", "weekday"),
    (r"\d\d\d\d-\d\d-\d\d", "date"),
    (r"title\s[^#\n;]+", "title"),
    (r"accDescription\s[^#\n;]+", "accDescription"),
    (r"section\s[^#:\n;]+", "section"),
    (r"[^#:\n;]+", "taskTxt"),
    (r":[^#\n;]+", "taskData"),
    (r":", ":"),
    (r".", "INVALID"),
]
TAGS = {"active", "done", "crit", "milestone"}


def gantt_tokens(chart: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    rules = [(re.compile(rx, re.IGNORECASE), kind) for rx, kind in GANTT_LEXER]
    while at < len(chart):
        for rx, kind in rules:
            m = rx.match(chart, at)
            if m and m.end() > at:
                if kind:
                    tokens.append((kind, m.group(0)))
                at = m.end()
                break
    return tokens


@dataclass(frozen=True)
class Task:
    label: str
    tags: tuple[str, ...]
    key: str
    start: int
    end: int


def parse_gantt(fenced: str) -> tuple[dict[str, str], list[Task]]:
    """The chart's settings and tasks, or an AssertionError naming what Mermaid would reject."""
    lines = fenced.split("\n")
    assert lines[0] == "```mermaid" and lines[-1] == "```" and "`" not in "".join(lines[1:-1])
    tokens = [t for t in gantt_tokens("\n".join(lines[1:-1])) if t[0] != "NL"]
    assert tokens[0] == ("gantt", "gantt"), tokens[:1]
    settings: dict[str, str] = {}
    tasks: list[Task] = []
    rest = tokens[1:]
    while rest:
        kind, text = rest.pop(0)
        if kind in ("dateFormat", "axisFormat", "title", "section"):
            settings[kind] = text.split(None, 1)[1].strip()
            continue
        assert kind == "taskTxt" and rest and rest[0][0] == "taskData", (kind, text, rest[:1])
        items = [item.strip() for item in rest.pop(0)[1][1:].split(",")]
        tags = tuple(i for i in items if i.lower() in TAGS)
        assert items[: len(tags)] == list(tags), items  # tags first
        key, start, end = items[len(tags) :]
        assert re.fullmatch(r"[A-Za-z][\w-]*", key) and key.lower() not in TAGS | {"after", "until"}, key
        tasks.append(Task(text.strip(), tags, key, int(start), int(end)))
    keys = [t.key for t in tasks]
    assert len(set(keys)) == len(keys), keys
    assert all(t.start < t.end for t in tasks)
    return settings, tasks


def timed_report(*subs: tuple[str, str, float, float], run_id: str = "r1") -> RunReport:
    base = report()
    records = tuple(
        replace(base.subtasks[1], id=sid, role=role, started_at=start, finished_at=end)
        for sid, role, start, end in subs
    )
    return replace(base, run_id=run_id, subtasks=records)


KEYWORD_IDS = ["section", "title", "click", "call", "gantt", "ganttish", "topaxis", "dateformat",
               "excludes", "includes", "todaymarker", "tickinterval", "weekday", "crit", "done", "after",
               "t1", "2024-01-01", "a:b#c;d%e", "x`y"]  # fmt: skip


def test_gantt_parses_whatever_the_ids_and_roles() -> None:
    subs = [(sid, "role; with: #colons %% and `ticks`\nclick x", 100.0 + i, 101.0 + i)
            for i, sid in enumerate(KEYWORD_IDS)]  # fmt: skip
    settings, tasks = parse_gantt(mermaid_gantt(timed_report(*subs, run_id="r1; section x")))
    assert settings == {"title": "Agents of run r1_ section x", "dateFormat": "x", "axisFormat": "%M:%S",
                        "section": "agents"}  # fmt: skip
    assert len(tasks) == len(KEYWORD_IDS)
    for n, (task, sid) in enumerate(zip(tasks, KEYWORD_IDS, strict=True), 1):
        assert task.tags == ("crit",) and (task.start, task.end) == ((n - 1) * 1000, n * 1000)
        assert task.key == f"t{n}" and task.label.startswith(f"t{n} "), sid  # every one is mapped


def test_gantt_keeps_plain_ids_as_keys() -> None:
    _, tasks = parse_gantt(mermaid_gantt(timed_report(("build-1", "builder", 5.0, 6.0))))
    assert [(t.label, t.key) for t in tasks] == [("build-1 (builder)", "build-1")]


@pytest.mark.parametrize(
    ("seconds", "axis", "origin"),
    [(1.5, "%S.%L", 0), (59.0, "%M:%S", 0), (3599.0, "%M:%S", 0), (7200.0, "%H:%M", 1_000_000_000_000)],
)
def test_gantt_axis_fits_the_run_and_never_reads_the_time_zone(
    seconds: float, axis: str, origin: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = mermaid_gantt(timed_report(("a", "r", 1e9, 1e9 + seconds)))
    settings, (task,) = parse_gantt(chart)
    assert settings["axisFormat"] == axis
    assert (task.start, task.end) == (origin, origin + round(seconds * 1000))
    for zone in ("Asia/Kolkata", "America/St_Johns", "UTC"):  # half-hour offsets too
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert mermaid_gantt(timed_report(("a", "r", 1e9, 1e9 + seconds))) == chart
    monkeypatch.delenv("TZ")
    time.tzset()


def test_gantt_without_timed_agents_is_still_a_chart() -> None:
    settings, tasks = parse_gantt(mermaid_gantt(replace(report(), subtasks=())))
    assert tasks == [] and settings["dateFormat"] == "x"


def test_json_has_the_honest_figures_and_per_subtask_fields_typed() -> None:
    base = report()
    stats = replace(base.stats, critical_path_seconds=1.5, setup_seconds_sum=0.4, merge_seconds_sum=0.1)
    sub = replace(
        base.subtasks[0],
        paths=("src/**",),
        command=("sed", "-i", "s/a/b/", "src/x.py"),
        exit_status=1,
        output_tail="line 1\nline 2",
        diffstat=Diffstat(2, 5, 3),
        setup_seconds=0.2,
        collect_seconds=0.05,
    )
    serial = SerialComparison(3.0, 2.5, 2.0, 1.5, "a" * 40, True, 0)
    data = json.loads(to_json(replace(base, stats=stats, subtasks=(sub, base.subtasks[1]), serial=serial)))
    typed = {"version": str, "parallelism": float, "speedup": float, "critical_path_seconds": float,
             "run_setup_seconds": float, "cleanup_seconds": float, "setup_seconds_sum": float,
             "collect_seconds_sum": float, "merge_seconds_sum": float, "serial": dict}  # fmt: skip
    for key, kind in typed.items():
        assert isinstance(data[key], kind), key
    assert data["version"] == __version__ and data["speedup"] == data["parallelism"] == 1.5
    assert data["setup_seconds_sum"] == 0.4 and data["critical_path_seconds"] == 1.5
    assert data["serial"] == {"seconds": 3.0, "agent_seconds": 2.5, "swarm_seconds": 2.0, "ratio": 1.5,
                              "commit": "a" * 40, "same_tree": True, "exit_status": 0,
                              "error": ""}  # fmt: skip
    first, second = data["subtasks"]
    assert first["paths"] == ["src/**"] and first["command"] == ["sed", "-i", "s/a/b/", "src/x.py"]
    assert first["exit_status"] == 1 and first["output_tail"] == "line 1\nline 2"
    assert first["diffstat"] == {"files": 2, "insertions": 5, "deletions": 3}
    assert first["setup_seconds"] == 0.2 and first["collect_seconds"] == 0.05
    assert second["command"] == [] and second["exit_status"] is None and second["output_tail"] == ""
    assert json.loads(to_json(base))["serial"] is None


def test_markdown_shows_timing_details_serial_and_version() -> None:
    base = report()
    sub = replace(base.subtasks[0], paths=("src/**",), command=("ruff", "--fix"), exit_status=1,
                  output_tail="fixed 3 files", diffstat=Diffstat(2, 5, 3))  # fmt: skip
    serial = SerialComparison(3.0, 2.5, 2.0, 1.5, "a" * 40, False, 0)
    md = to_markdown(replace(base, subtasks=(sub, base.subtasks[1]), serial=serial))
    assert "parallelism 1.50×" in md and "speedup" not in md
    assert (
        "### Timing" in md
        and "| Σ clone setup |" in md
        and "| parallelism (Σ agent time / wall) | 1.50× |" in md
    )
    assert "### Serial comparison" in md and "**differs from** the swarm's integration tree" in md
    assert "- command: `ruff --fix`" in md and "- exit status: 1" in md
    assert "- diffstat: 2 file(s) changed, +5 −3" in md and "- paths: `src/**`" in md
    assert "fixed 3 files" in md
    assert md.rstrip().endswith(f"*ci-swarm `{__version__}`*")


def test_summary_lines_name_the_integration_branch_and_commit_whole() -> None:
    lines = summary_lines(replace(report(), integration_branch="swarm/" + "x" * 120))
    assert lines[-1] == f"integration: swarm/{'x' * 120} {'c' * 40}"
    assert lines[0].startswith("summary: 1/2 subtasks succeeded, 1 conflict(s), wall 2.00s")


# --- conflict repairs and verification (issue #12) -----------------------------------------------------

HOSTILE_REASON = "@someone <img src=x onerror=alert(1)> fixes #1: the resolver wrote `<<<<<<<` markers"


def repaired_report(outcome: Resolved, reason: str = "") -> RunReport:
    """``report()`` whose conflicted merge of ``b`` was repaired (or refused) by a command resolver."""
    base = report()
    ok = outcome is not Resolved.REFUSED
    gate = (CheckResult("tests", ok, 0 if ok else 1, 1.25, output_tail="" if ok else "FAILED test_conf"),)
    usage = Usage(requests=1, input_tokens=30, output_tokens=10, cost_usd=0.02)
    repair = Repair(
        outcome,
        "command (resolver)",
        "7" * 40,
        "9" * 40,
        reason=reason,
        checks=gate,
        seconds=2.5,
        usage=usage,
    )
    merges = (replace(base.merges[0], joined=2), replace(base.merges[1], repair=repair))
    policy = MergePolicy(on_conflict=OnConflict.RESOLVE, resolver=AgentSpec("command"))
    return replace(base, merges=merges, merge_policy=policy)


def test_json_shows_repairs_resolutions_and_the_merge_policy() -> None:
    data = json.loads(to_json(repaired_report(Resolved.RESOLVED)))
    clean, conflicted = data["merges"]
    assert (clean["joined"], clean["resolution"], clean["repair"]) == (2, None, None)
    assert conflicted["resolution"] == "resolved"
    repair = conflicted["repair"]
    assert {k: repair[k] for k in ("outcome", "by", "commit", "start", "reason", "seconds")} == {
        "outcome": "resolved", "by": "command (resolver)", "commit": "7" * 40, "start": "9" * 40,
        "reason": "", "seconds": 2.5}  # fmt: skip
    assert repair["checks"] == [{"name": "tests", "ok": True, "exit_status": 0, "seconds": 1.25,
                                 "timed_out": False, "flipped": False, "output_tail": ""}]  # fmt: skip
    assert repair["usage"]["cost_usd"] == 0.02 and repair["usage"]["tokens"] == 40
    assert data["usage"]["cost_usd"] == 0.0  # the run's total is left alone: the repair shows its own
    (conflict,) = data["conflicts"]
    assert (conflict["resolution"], conflict["resolved_by"]) == ("resolved", "command (resolver)")
    assert data["merge_policy"] == {"order": "completion", "prefer": "first", "insertions": "both",
                                    "on_conflict": "resolve", "resolver": "command"}  # fmt: skip
    plain = json.loads(to_json(report()))
    assert plain["conflicts"][0]["resolution"] == "kept" and plain["conflicts"][0]["resolved_by"] == ""
    assert plain["merge_policy"]["resolver"] is None and plain["merge_policy"]["on_conflict"] == "keep"


def test_a_conflicts_own_resolution_wins_over_its_merges_repair() -> None:
    base = repaired_report(Resolved.REFUSED, "markers left")
    (conflict,) = base.merges[1].conflicts
    mine = replace(conflict, resolution=Resolved.REDONE, resolved_by="command (redo of b)")
    merges = (base.merges[0], replace(base.merges[1], conflicts=(mine,)))
    (data,) = json.loads(to_json(replace(base, merges=merges)))["conflicts"]
    assert (data["resolution"], data["resolved_by"]) == ("redone", "command (redo of b)")


def test_markdown_shows_resolutions_repairs_and_joined_regions() -> None:
    md = to_markdown(repaired_report(Resolved.RESOLVED))
    doc = rendered(md)
    assert "h3 Conflict repairs" in doc.headings()
    visible = doc.visible()
    assert "clean · 2 insert/insert regions joined" in visible
    assert "resolution: resolved by command (resolver)" in visible
    assert "b: resolved by command (resolver) — checks passed (1)" in visible
    assert "1 (resolved)" in visible  # the merges table's conflicts column
    plain = rendered(to_markdown(report()))
    assert "h3 Conflict repairs" not in plain.headings() and "resolution: kept" in plain.visible()


def test_a_refused_repair_says_why_with_the_reason_neutralised() -> None:
    md = to_markdown(repaired_report(Resolved.REFUSED, HOSTILE_REASON))
    doc = rendered(md)
    texts = doc.inline_texts()
    assert not [t for t in texts if MENTION.search(t)], "a mention GitHub would link"
    assert not [t for t in texts if CLOSING.search(t)], "a closing reference"
    assert not [t for t in doc.walk() if t.type == "image"]
    ours = {"<details><summary>output (last lines)</summary>", "<details><summary>the other side</summary>"}
    assert set(doc.html()) <= {*ours, "</details>"}
    visible = doc.visible()
    assert HOSTILE_REASON in visible  # shown, inert
    assert "refused (command (resolver)'s attempt; the kept side stands)" in visible
    assert "checks failed: tests (fail)" in visible
    assert ("", "FAILED test_conf\n") in doc.fences()  # the failing gate's log tail


def test_summary_lines_and_the_terminal_have_one_line_per_repair() -> None:
    lines = summary_lines(repaired_report(Resolved.REFUSED, "markers left"))
    repairs = [line for line in lines if line.startswith("repair:")]
    assert repairs == [
        "repair: b refused by command (resolver), checks failed: tests (fail), 2.50s: markers left"
    ]
    assert lines[-1].startswith("integration: ")
    console = Console(record=True, width=300)
    print_terminal(repaired_report(Resolved.RESOLVED), console)
    text = console.export_text()
    assert "repair: b resolved by command (resolver), checks passed (1), 2.50s" in text


def verified_report() -> RunReport:
    base = report()
    rejected = replace(
        base.subtasks[1], status=SubtaskStatus.REJECTED, error="broke the checks: tests failed"
    )
    checks = (CheckResult("tests", True, 0, 1.0, flipped=True),)
    culprit = Culprit("b", "tests", HOSTILE_REASON, "E   AssertionError: b broke it")
    verification = Verification(
        VerificationStatus.PASSED, checks, 3, (culprit,), 4.0, "passed after setting aside b"
    )
    return replace(base, subtasks=(base.subtasks[0], rejected), verification=verification)


def test_markdown_verification_shows_status_culprits_and_flipped_checks() -> None:
    doc = rendered(to_markdown(verified_report()))
    assert "h3 Verification" in doc.headings()
    visible = doc.visible()
    assert "Verification passed: passed after setting aside b (3 check run(s), 4.0s)" in visible
    assert "Flaky: tests failed once and passed when re-checked." in visible
    assert f"b (check tests): {HOSTILE_REASON}" in visible
    assert ("", "E   AssertionError: b broke it\n") in doc.fences()
    assert "⛔ rejected" in visible and "broke the checks: tests failed" in visible
    texts = doc.inline_texts()
    assert not [t for t in texts if MENTION.search(t) or CLOSING.search(t)]
    assert not [t for t in doc.walk() if t.type == "image"]

"""Competing attempts in the reports (issue #14): the *Attempts* section of the Markdown report and the PR
body — rendered by a real GFM renderer, as tests/test_render_gfm.py does, with hostile agents and reasons —
and the one summary line per judged subtask."""

from __future__ import annotations

from dataclasses import replace

from ci_swarm import models as m
from ci_swarm.attempts_report import attempts_section
from ci_swarm.github.publish import pr_body
from ci_swarm.logtext import one_line
from ci_swarm.report import summary_lines, to_markdown
from tests.test_render_gfm import HOSTILE, SECTIONS, assert_inert, hostile_report, rendered

OK, FAILED = m.SubtaskStatus.SUCCEEDED, m.SubtaskStatus.FAILED
PASS = m.CheckResult("tests", True, 0, 0.1)
FAIL = m.CheckResult("tests", False, 1, 0.1, "boom")
SPENT = m.Usage(requests=2, cost_usd=0.0123)


def attempts() -> tuple[m.AttemptRecord, ...]:
    branch = "swarm/r1-agents/a."
    return (
        m.AttemptRecord(1, HOSTILE, FAILED, branch + "1", reason=HOSTILE, usage=SPENT),
        m.AttemptRecord(2, "command", OK, branch + "2", "c2", "t", (FAIL,), 5, usage=SPENT),
        m.AttemptRecord(3, "command", OK, branch + "3", "c3", "t2", (PASS,), 2, votes=1.0, score=7.5),
        m.AttemptRecord(4, "command", OK, branch + "4", "c4", "t2", (PASS,), 2, votes=2.0, reason=HOSTILE),
    )


def judged_report(winner: int | None = 3) -> m.RunReport:
    report = hostile_report()
    why = f"attempt 3 passes its checks with the smallest diff; attempt 1: {HOSTILE}"
    judgement = m.Judgement(m.Judge.CHECKS, winner, why, attempts())
    first = replace(report.subtasks[0], judgement=judgement)
    return replace(report, subtasks=(first, *report.subtasks[1:]))


def test_the_attempts_table_is_in_the_report_and_the_pr_body_and_renders_inert() -> None:
    report = judged_report()
    for markdown, closes in ((to_markdown(report), None), (pr_body(report, 7), 7)):
        doc = rendered(markdown)
        assert_inert(doc, closes=closes)
        assert doc.headings() == ["h2 ci-swarm run `r1`", "h3 Subtasks", "h3 Attempts", *SECTIONS[1:]]
        assert doc.table_shapes()[2] == [9] * 5  # header + one row per attempt, nine cells each
        visible = doc.visible()
        assert HOSTILE.replace("\u202e", "").replace("\n", " ") in visible  # neutralised, not dropped
        assert "attempt 3 of 4 won" in visible and "judge checks" in visible


def test_each_row_says_status_checks_diff_score_votes_cost_branch_and_the_winner() -> None:
    section = attempts_section(judged_report())
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]
    assert [c[0] for c in cells] == ["1", "2", "3 🏆", "4"]
    assert cells[0][2] == "failed" and cells[0][4] == "–" and cells[0][6] == "$0.0123"
    assert cells[1][3] == "❌ `tests`" and cells[1][4] == "5 lines" and "check 'tests' failed" in cells[1][8]
    assert cells[2][3] == "✅ 1/1" and cells[2][5] == "7.5 · 1 vote(s)" and cells[2][6] == "–"
    assert cells[3][5] == "2 vote(s)" and cells[3][7] == "`swarm/r1-agents/a.4`"


def test_no_winner_says_so_and_a_run_without_attempts_has_no_section() -> None:
    section = attempts_section(judged_report(winner=None))
    assert "**no attempt won**" in section and "🏆" not in section
    assert "### Attempts" not in to_markdown(hostile_report())


def test_one_summary_line_per_judged_subtask() -> None:
    report = judged_report()
    second = replace(report.subtasks[1], judgement=m.Judgement(m.Judge.VOTE, None, "no attempt succeeded"))
    report = replace(report, subtasks=(report.subtasks[0], second))
    lines = [line for line in summary_lines(report) if line.startswith("attempts: ")]
    assert len(lines) == 2
    assert lines[0].startswith("attempts: a: checks, attempt 3 of 4 won — attempt 3 passes its checks")
    assert lines[1] == "attempts: section: vote, no attempt won — no attempt succeeded"
    assert "\n" not in one_line(lines[0])  # the CLI prints each through one_line
    assert summary_lines(report)[-1].startswith("integration: ")

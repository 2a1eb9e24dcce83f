"""Competing attempts through the Action (issue #14), against the fake GitHub: a planned subtask with three
attempts — one fails the repository's checks, two produce the same tree — and the config's ``judge:`` and
``best_of:``; the PR body's *Attempts* table shows every attempt, the winner and why, rendered inert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_swarm.action import main
from tests.act_helpers import World, make_world, swarm_plan, write_sub
from tests.helpers import show
from tests.test_render_gfm import OUR_HTML, rendered

CHECK = 'if grep -q bad src/new.py 2>/dev/null; then echo "bad is here"; exit 1; fi\n'
CHECKS = 'checks:\n  - {name: no-bad, run: "sh check.sh"}\n'


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def writes(content: str) -> dict[str, Any]:
    return {"kind": "scripted", "edits": [{"write": "src/new.py", "content": content}]}


def run(world: World, config: str, subtask: dict[str, Any]) -> tuple[int, str]:
    world.commit_to_default({".github/ci-swarm.yml": config, "check.sh": CHECK})
    issue = world.issue("Competing attempts", swarm_plan(subtask), labels=("swarm",))
    code = main(world.env("issues", world.labeled(issue)))
    body = world.repo().get_pull(int(world.read_outputs()["pr_number"])).body
    return code, body


def table_rows(body: str) -> list[list[str]]:
    section = body.split("### Attempts")[1].split("\n### ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_three_attempts_one_failing_the_checks_the_pr_body_shows_the_winner_and_why(
    world: World,
) -> None:
    sub = write_sub("feat", "src/new.py", "unused\n") | {
        "attempts": [writes("bad\n"), writes("x = 1\ny = 2\n"), writes("x = 1\ny = 2\n")]
    }
    code, body = run(world, CHECKS, sub)  # with checks, the default judge is checks
    assert code == 0
    doc = rendered(body)
    assert set(doc.html()) <= OUR_HTML | {"<details><summary>output (last lines)</summary>"}
    assert "h3 Attempts" in doc.headings()
    why = "attempt 2 of 3 won: attempt 2 passes its checks with the smallest diff (2 lines) of 2 passing"
    assert why in doc.visible()  # 2 and 3 tie on the diff: the lower index wins
    rows = table_rows(body)
    assert [r[0] for r in rows] == ["1", "2 🏆", "3"]
    assert rows[0][3] == "❌ `no-bad`" and "check 'no-bad' failed" in rows[0][8]
    assert rows[1][3] == rows[2][3] == "✅ 1/1" and rows[1][5] == rows[2][5] == "–"
    assert rows[1][4] == "2 lines" and rows[1][7].startswith("`swarm/") and rows[1][7].endswith("/feat.2`")
    merged = show(world.bare, world.read_outputs()["branch"], "src/new.py")
    assert merged == "x = 1\ny = 2\n"  # the winner was merged and pushed


def test_the_configs_best_of_and_judge_reach_the_actions_run(world: World) -> None:
    config = CHECKS + "best_of: 2\njudge: vote\n"
    code, body = run(world, config, write_sub("feat", "src/new.py", "x = 1\n"))
    assert code == 0
    rows = table_rows(body)
    assert [r[0] for r in rows] == ["1 🏆", "2"] and all(r[2] == "succeeded" for r in rows)
    assert [r[5] for r in rows] == ["2 vote(s)", "2 vote(s)"]
    assert "judge `vote`" in body and "attempts 1, 2 produced the same tree (2 of 2)" in body

"""Verification and conflict repairs as a maintainer sees them on GitHub (issue #12), through the Action
against the fake GitHub: a run whose checks fail with one culprit opens a pull request whose body says the
integration was verified (``passed`` after setting the culprit aside), names the rejected subtask with its
reason and the failing check's log tail, and renders inert (GFM, as github.com would) even when the check's
output is hostile.

And ``merge.on_conflict: resolve`` with a scripted resolver whose resolution passes the checks: the PR shows
the conflict ``resolved`` and by whom, and no lost-side review comment. A refused repair's wording is tested
on hand-built reports in tests/test_report.py, tests/test_review_wording.py and tests/test_github_review.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ci_swarm.action import main
from tests.act_helpers import World, make_world, swarm_plan, write_sub
from tests.helpers import SANDBOX_PY
from tests.test_render_gfm import CLOSING, MENTION, rendered

HOSTILE = "@someone <img src=x onerror=alert(1)> fixes #1"
CHECK = f'if [ -e bad ]; then echo "{HOSTILE}: bad is here"; exit 1; fi\necho fine\n'
CONFIG = 'checks:\n  - {name: no-bad, run: "sh check.sh"}\n'


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def _run_with_one_culprit(world: World) -> tuple[int, dict[str, str], str, int]:
    world.commit_to_default({".github/ci-swarm.yml": CONFIG, "check.sh": CHECK})
    plan = swarm_plan(write_sub("good", "src/good.py", "ok = True\n"), write_sub("breaks", "bad", "x\n"))
    issue = world.issue("Checked work", plan, labels=("swarm",))
    code = main(world.env("issues", world.labeled(issue)))
    out = world.read_outputs()
    body = world.repo().get_pull(int(out["pr_number"])).body
    return code, out, body, issue.number


def test_the_pr_body_shows_verification_passed_and_the_rejected_subtask_with_its_reason(world: World) -> None:
    code, out, body, _ = _run_with_one_culprit(world)
    assert code == 3  # a culprit was set aside: the run is not a plain success
    assert out["failed"] == "1"
    doc = rendered(body)
    assert "h3 Verification" in doc.headings()
    visible = doc.visible()
    verification = visible.split("Verification passed:")[1]
    assert "no-bad" in verification and "check run(s)" in verification
    assert "breaks (check no-bad):" in verification  # the culprit, named with its check and reason
    rows = [t.content for t in doc.tokens if t.type == "inline" and "rejected" in t.content]
    assert any("⛔ rejected" in r for r in rows)  # the subtasks table says it was rejected
    fences = [content for _, content in doc.fences()]
    assert any(
        f"{HOSTILE}: bad is here" in f for f in fences
    )  # the failing check's tail, verbatim in a fence


def test_the_pr_body_and_job_summary_stay_inert_with_a_hostile_check_output(world: World) -> None:
    _, _, body, number = _run_with_one_culprit(world)
    for markdown, closes in ((body, [f"Closes #{number}"]), (world.summary.read_text(), [])):
        doc = rendered(markdown)
        texts = doc.inline_texts()
        assert not [t for t in texts if MENTION.search(t)], "a mention GitHub would link"
        assert [hit.group(0) for t in texts for hit in CLOSING.finditer(t)] == closes
        assert not [t for t in doc.walk() if t.type == "image"]
        assert not [h for h in doc.html() if "<img" in h]
        assert HOSTILE in doc.visible()  # shown, not dropped
    summary = world.summary.read_text()
    assert "Verification **passed**" in summary and "⛔ rejected" in summary


LIB = "def greet():\n    return 'hi'\n"
APP = "import lib\n\nprint(lib.greet())\n"
JOINED = "def hello():  # the greeting\n    return 'hi'\n"


def test_a_resolved_conflict_shows_as_resolved_on_the_pr(world: World) -> None:
    """``merge.on_conflict: resolve`` with a scripted resolver whose joined text passes the checks."""
    config = f'checks:\n  - {{name: app, run: "{SANDBOX_PY} app.py"}}\n'
    world.commit_to_default({".github/ci-swarm.yml": config, "lib.py": LIB, "app.py": APP})
    polish = {
        "id": "polish",
        "role": "builder",
        "title": "polish",
        "paths": ["lib.py"],
        "agent": {
            "kind": "scripted",
            "edits": [{"replace": "lib.py", "old": "def greet():", "new": "def greet():  # the greeting"}],
        },
    }
    rename = {
        "id": "rename",
        "role": "builder",
        "title": "rename",
        "paths": ["lib.py", "app.py"],
        "agent": {
            "kind": "scripted",
            "edits": [
                {"replace": "lib.py", "old": "def greet", "new": "def hello"},
                {"replace": "app.py", "old": "lib.greet", "new": "lib.hello"},
            ],
        },
    }
    text = yaml.safe_dump(
        {
            "version": 1,
            "task": "rename",
            "subtasks": [polish, rename],
            "merge": {
                "order": "plan",
                "on_conflict": "resolve",
                "resolver": {"kind": "scripted", "edits": [{"write": "lib.py", "content": JOINED}]},
            },
        },
        sort_keys=False,
    )
    issue = world.issue("Rename greet", f"```swarm-plan\n{text}```\n", labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 0
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    visible = rendered(pr.body).visible()
    assert "resolution: resolved by scripted (resolver)" in visible
    assert "rename: resolved by scripted (resolver) — checks passed (1)" in visible
    assert list(pr.get_review_comments()) == []  # nothing lost: no lost-side comment
    assert any("resolved by **scripted (resolver)**" in (r.body or "") for r in pr.get_reviews())

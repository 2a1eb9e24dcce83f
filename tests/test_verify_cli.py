"""``ci-swarm run`` with checks: ``--check`` (repeatable, split like a shell would), the config's
``checks``, a plan's own ``checks``; the JSON and Markdown reports' verification section; exit 3 when a
culprit is set aside; exit 4 for a check a shell cannot split."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm.action import main
from tests.act_helpers import World, make_world, swarm_plan, write_sub
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, run_cli, scripted

LIB = "def greet():\n    return 'hi'\n"
APP = "import lib\n\nprint(lib.greet())\n\n\n\n# more calls below\n"


def _semantic_conflict() -> list[dict[str, Any]]:
    rename = scripted("rename", edits=[{"replace": "lib.py", "old": "def greet", "new": "def hello"}])
    rename["agent"]["edits"].append({"replace": "app.py", "old": "lib.greet", "new": "lib.hello"})
    caller = scripted("caller", edits=[{"append": "app.py", "text": "print(lib.greet())\n"}])
    return [rename, caller]


def _run(tmp: Path, repo: Path, plan: dict[str, Any], *args: str) -> tuple[int, dict[str, Any], str, str]:
    plan_file = tmp / "plan.yml"
    plan_file.write_text(yaml.safe_dump(plan))
    out, md = tmp / "r.json", tmp / "r.md"
    argv = ["run", "--plan", str(plan_file), "--repo", str(repo), "--quiet", "--merge-order", "plan"]
    proc = run_cli(*argv, "--report", str(out), "--report-md", str(md), *args, timeout=300)
    report = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, report, md.read_text() if md.exists() else "", proc.stderr


def test_run_check_sets_the_culprit_aside_in_both_reports_and_exits_3(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"lib.py": LIB, "app.py": APP})
    plan = {"version": 1, "task": "rename", "subtasks": _semantic_conflict()}
    code, report, md, err = _run(tmp_path, repo, plan, "--check", f"{SANDBOX_PY} app.py")
    assert code == 3, err
    v = report["verification"]
    assert v["status"] == "passed" and v["check_runs"] >= 3
    assert [c["subtask"] for c in v["culprits"]] == ["caller"]
    assert "AttributeError" in v["culprits"][0]["output_tail"]
    statuses = {s["id"]: s["status"] for s in report["subtasks"]}
    assert statuses == {"rename": "succeeded", "caller": "rejected"}
    assert "### Verification" in md and "Verification **passed**" in md and "**Set aside**" in md
    assert "`caller`" in md.split("### Verification")[1].split("###")[0]


def test_config_checks_run_and_a_plan_without_checks_uses_them(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "ok.txt": "ok\n",
            ".github/ci-swarm.yml": "checks:\n  - {name: no-bad, run: \"sh -c '! test -e bad'\"}\n",
        },
    )
    plan = {"version": 1, "subtasks": [scripted("good", edits=[{"write": "good.txt", "content": "g\n"}])]}
    code, report, md, err = _run(tmp_path, repo, plan)
    assert code == 0, err
    v = report["verification"]
    assert v["status"] == "passed" and v["check_runs"] == 1 and v["checks"][0]["name"] == "no-bad"
    assert v["checks"][0]["ok"] is True and "Verification **passed**" in md


def test_a_plans_own_checks_and_no_checks_at_all(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ok.txt": "ok\n"})
    sub = scripted("bad", edits=[{"write": "bad", "content": "x\n"}])
    plan = {
        "version": 1,
        "subtasks": [sub],
        "checks": [{"name": "no-bad", "run": ["sh", "-c", "! test -e bad"]}],
    }
    code, report, _, err = _run(tmp_path, repo, plan)
    assert code == 3, err
    assert report["verification"]["culprits"][0]["subtask"] == "bad"
    assert report["integration_commit"] == report["base"]  # every subtask a culprit
    (tmp_path / "second").mkdir()
    code, report, md, err = _run(tmp_path / "second", repo, {"version": 1, "subtasks": [scripted("x")]})
    assert code == 0, err
    assert report["verification"]["status"] == "not_run" and "Verification **not run**" in md


def test_a_check_a_shell_cannot_split_is_exit_4(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"ok.txt": "ok\n"})
    code, _, _, err = _run(
        tmp_path, repo, {"version": 1, "subtasks": [scripted("x")]}, "--check", "sh -c 'oops"
    )
    assert code == 4 and "--check" in err


# --- through the Action ---------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def test_the_action_verifies_and_the_pr_body_shows_what_was_set_aside(world: World) -> None:
    world.commit_to_default(
        {".github/ci-swarm.yml": "checks:\n  - {name: no-bad, run: \"sh -c '! test -e bad'\"}\n"}
    )
    plan = swarm_plan(write_sub("good", "src/good.py", "ok = True\n"), write_sub("breaks", "bad", "x\n"))
    issue = world.issue("Checked", plan, labels=("swarm",))
    assert main(world.env("issues", world.labeled(issue))) == 3
    out = world.read_outputs()
    pr = world.repo().get_pull(int(out["pr_number"]))
    assert [f.filename for f in pr.get_files()] == ["src/good.py"]
    assert "Verification **passed**" in pr.body and "**Set aside**" in pr.body
    assert "`breaks`" in pr.body.split("### Verification")[1]

"""Fan-out end to end through the CLI, each job in its own clone as on separate runners: ``plan --fan-out``
in one clone (state and integration branch pushed), one ``agent`` per subtask in a fresh clone writing a
bundle, ``land`` in yet another clone — the integration tree equals ``run --merge-order plan``; a failed
agent job's subtask fails and the rest lands; a second ``land`` merges nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures import make_repo
from tests.helpers import clean_env, run_cli, scripted

RUN = "fan1"
SHARED = "one\ntwo\nthree\n"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _plan(fail: str = "") -> dict[str, Any]:
    docs = scripted("docs", edits=[{"write": "docs.txt", "content": "docs\n"}])
    left = scripted("left", edits=[{"replace": "shared.txt", "old": "two", "new": "LEFT"}])
    right = scripted("right", "tester", edits=[{"replace": "shared.txt", "old": "two", "new": "RIGHT"}])
    if fail:
        docs["agent"]["fail"] = fail
    return {"version": 1, "task": "fan out", "subtasks": [docs, left, right]}


def _clone(origin: Path, path: Path, *refs: str) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(origin), str(path)], check=True)
    for ref in refs:
        _git(path, "fetch", "--quiet", "origin", f"{ref}:{ref}")
    return path


def _fan_out(
    tmp: Path, plan: dict[str, Any], files: dict[str, str] | None = None
) -> tuple[Path, Path, dict[str, str]]:
    origin = make_repo(tmp / "origin", {"shared.txt": SHARED, "readme.txt": "hi\n", **(files or {})})
    plan_file = tmp / "plan.yml"
    plan_file.write_text(yaml.safe_dump(plan))
    planner = _clone(origin, tmp / "plan-job")
    out = tmp / "matrix.txt"
    args = ("plan", "--fan-out", "--plan-file", str(plan_file), "--repo", str(planner))
    proc = run_cli(*args, "--run-id", RUN, "--matrix-out", str(out))
    assert proc.returncode == 0, proc.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    _git(planner, "push", "--quiet", "origin", f"swarm/{RUN}", f"refs/swarm/{RUN}/state")
    return origin, plan_file, outputs


def _agents(tmp: Path, origin: Path, ids: list[str], *flags: str) -> dict[str, int]:
    codes = {}
    for sub in ids:
        clone = _clone(origin, tmp / f"agent-{sub}", f"refs/swarm/{RUN}/state")
        bundle = tmp / "bundles" / f"agent-{sub}" / f"{sub}.bundle"
        proc = run_cli(
            "agent", "--run-id", RUN, "--subtask", sub, "--bundle", str(bundle), "--repo", str(clone), *flags
        )
        codes[sub] = proc.returncode
        assert (bundle.parent / f"{sub}.bundle.json").is_file(), proc.stderr
    return codes


def _land(tmp: Path, clone: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp / f"land-{len(list(tmp.glob('land-*.json')))}.json"
    args = ("land", "--run-id", RUN, "--bundles", str(tmp / "bundles"), "--repo", str(clone))
    proc = run_cli(*args, "--report-json", str(report))
    return proc, json.loads(report.read_text()) if report.exists() else {}


def _land_outputs(tmp: Path, clone: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    out = tmp / f"outputs-{len(list(tmp.glob('outputs-*.txt')))}.txt"
    args = ("land", "--run-id", RUN, "--bundles", str(tmp / "bundles"), "--repo", str(clone))
    proc = run_cli(*args, "--matrix-out", str(out))
    lines = out.read_text().splitlines() if out.exists() else []
    return proc, dict(line.split("=", 1) for line in lines)


def _ids(matrix: str) -> list[str]:
    return [row["subtask"] for row in json.loads(matrix)["include"]]


def _single_machine_tree(tmp: Path, origin: Path, plan_file: Path) -> str:
    clone = _clone(origin, tmp / "one-machine")
    proc = run_cli("run", "--plan", str(plan_file), "--repo", str(clone), "--quiet", "--merge-order", "plan")
    assert proc.returncode in (0, 2, 3), proc.stderr
    commit = proc.stdout.strip().splitlines()[-1].split()[-1]
    return _git(clone, "rev-parse", f"{commit}^{{tree}}")


def test_fanned_out_run_lands_the_same_tree_as_one_machine_and_lands_once(tmp_path: Path) -> None:
    origin, plan_file, outputs = _fan_out(tmp_path, _plan())
    assert outputs["run_id"] == RUN and outputs["chunks"] == "1" and outputs["waves"] == "1"
    ids = [row["subtask"] for row in json.loads(outputs["matrix"])["include"]]
    assert ids == ["docs", "left", "right"]
    assert _agents(tmp_path, origin, list(reversed(ids))) == {"right": 0, "left": 0, "docs": 0}
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    proc, report = _land(tmp_path, lander)
    assert proc.returncode == 2, proc.stderr  # the left/right pair conflicts: recorded, work kept
    assert [m["subtask"] for m in report["merges"]] == ["docs", "left", "right"]
    assert {s["id"]: s["status"] for s in report["subtasks"]} == dict.fromkeys(ids, "succeeded")
    tip = _git(lander, "rev-parse", f"refs/heads/swarm/{RUN}")
    assert report["integration_commit"] == tip
    assert _git(lander, "show", f"{tip}:shared.txt") == "one\nLEFT\nthree"
    assert _git(lander, "rev-parse", f"{tip}^{{tree}}") == _single_machine_tree(tmp_path, origin, plan_file)
    again, second = _land(tmp_path, lander)
    assert again.returncode == 2 and "already landed" in again.stderr
    assert second["integration_commit"] == tip == _git(lander, "rev-parse", f"refs/heads/swarm/{RUN}")
    assert f"integration: swarm/{RUN} {tip}" in again.stdout


def test_a_failed_agent_job_fails_its_subtask_and_the_rest_lands(tmp_path: Path) -> None:
    origin, _, _ = _fan_out(tmp_path, _plan(fail="tool crashed"))
    codes = _agents(tmp_path, origin, ["docs", "left"])  # right's job never reported
    assert codes == {"docs": 3, "left": 0}
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    proc, report = _land(tmp_path, lander)
    assert proc.returncode == 3, proc.stderr
    subs = {s["id"]: s for s in report["subtasks"]}
    assert subs["docs"]["status"] == "failed" and "tool crashed" in subs["docs"]["error"]
    assert subs["right"]["status"] == "failed" and subs["right"]["error"] == "no result from its job"
    assert subs["left"]["status"] == "succeeded"
    assert [m["subtask"] for m in report["merges"]] == ["left"]
    assert _git(lander, "show", f"{report['integration_commit']}:shared.txt") == "one\nLEFT\nthree"


def test_a_tampered_result_is_refused_with_its_reason_and_the_rest_lands(tmp_path: Path) -> None:
    origin, _, _ = _fan_out(tmp_path, _plan())
    _agents(tmp_path, origin, ["docs", "left"])
    sidecar = tmp_path / "bundles" / "agent-left" / "left.bundle.json"
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "commit": "f" * 40}))  # a bundle for another commit
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    proc, report = _land(tmp_path, lander)
    assert proc.returncode == 3, proc.stderr
    subs = {s["id"]: s for s in report["subtasks"]}
    assert subs["left"]["status"] == "failed"
    assert subs["left"]["error"].startswith("result refused: the bundle holds commit")
    assert [m["subtask"] for m in report["merges"]] == ["docs"]
    assert _git(lander, "rev-parse", "--verify", "--quiet", f"refs/heads/swarm/{RUN}-agents/docs")


def _two_waves(fail: str = "") -> dict[str, Any]:
    """docs and left in wave 1; check (wave 2) builds on docs' merged work, as on one machine."""
    plan = _plan(fail)
    plan["subtasks"][2] = scripted(
        "check", "tester", edits=[{"replace": "docs.txt", "old": "docs", "new": "docs, checked"}]
    )
    plan["subtasks"][2]["depends_on"] = ["docs"]
    return plan


def test_a_later_wave_starts_from_the_tip_its_dependencies_landed_and_matches_one_machine(
    tmp_path: Path,
) -> None:
    origin, plan_file, outputs = _fan_out(tmp_path, _two_waves())
    assert (outputs["waves"], outputs["wave"]) == ("2", "1") and _ids(outputs["matrix"]) == ["docs", "left"]
    early = _clone(origin, tmp_path / "agent-early", f"refs/swarm/{RUN}/state")
    proc = run_cli("agent", "--run-id", RUN, "--subtask", "check", "--repo", str(early))
    assert proc.returncode == 4 and "is in wave 2: wave 1 has not landed yet" in proc.stderr
    assert _agents(tmp_path, origin, ["left", "docs"]) == {"left": 0, "docs": 0}
    first = _clone(origin, tmp_path / "land-job-1", f"refs/swarm/{RUN}/state")
    proc, out = _land_outputs(tmp_path, first)
    assert proc.returncode == 0, proc.stderr
    tip = _git(first, "rev-parse", f"refs/heads/swarm/{RUN}")
    assert (out["tip"], out["wave"], out["next_wave"], out["done"]) == (tip, "1", "2", "false")
    assert _ids(out["matrix"]) == ["check"] and out["chunks"] == "1" and out["waves"] == "2"
    again, same = _land_outputs(tmp_path, first)  # the same wave's results: lands nothing again
    assert again.returncode == 0 and "wave 1 had already landed" in again.stderr
    assert (same["tip"], same["matrix"], same["next_wave"]) == (tip, out["matrix"], "2")
    assert _git(first, "rev-parse", f"refs/heads/swarm/{RUN}") == tip
    _git(first, "push", "--quiet", "origin", f"refs/swarm/{RUN}/state")  # the state alone carries the tip
    assert _agents(tmp_path, origin, ["check"]) == {"check": 0}
    sidecar = json.loads((tmp_path / "bundles" / "agent-check" / "check.bundle.json").read_text())
    assert sidecar["start"] == tip
    last = _clone(origin, tmp_path / "land-job-2", f"refs/swarm/{RUN}/state")
    proc, out = _land_outputs(tmp_path, last)
    assert proc.returncode == 0, proc.stderr
    assert (out["matrix"], out["done"], out["wave"]) == ("", "true", "2")
    proc, report = _land(tmp_path, last)
    assert proc.returncode == 0 and "run fan1 had already landed" in proc.stderr
    final = _git(last, "rev-parse", f"refs/heads/swarm/{RUN}")
    assert report["integration_commit"] == final == out["tip"]
    assert [(m["subtask"], m["order"]) for m in report["merges"]] == [("docs", 1), ("left", 2), ("check", 3)]
    assert {s["id"]: s["status"] for s in report["subtasks"]} == dict.fromkeys(
        ["docs", "left", "check"], "succeeded"
    )
    assert _git(last, "show", f"{final}:docs.txt") == "docs, checked"
    assert _git(last, "rev-parse", f"{final}^{{tree}}") == _single_machine_tree(tmp_path, origin, plan_file)


def test_a_failed_dependency_skips_its_dependents_and_the_run_lands_after_the_first_wave(
    tmp_path: Path,
) -> None:
    origin, _, _ = _fan_out(tmp_path, _two_waves(fail="tool crashed"))
    assert _agents(tmp_path, origin, ["docs", "left"]) == {"docs": 3, "left": 0}
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    proc, out = _land_outputs(tmp_path, lander)
    assert proc.returncode == 3, proc.stderr
    assert (out["matrix"], out["done"]) == ("", "true")  # nothing of wave 2 can run: the run landed
    _git(lander, "push", "--quiet", "origin", f"refs/swarm/{RUN}/state")
    clone = _clone(origin, tmp_path / "agent-check", f"refs/swarm/{RUN}/state")
    proc = run_cli("agent", "--run-id", RUN, "--subtask", "check", "--repo", str(clone))
    assert proc.returncode == 4 and "has landed" in proc.stderr
    _, report = _land(tmp_path, lander)
    check = next(s for s in report["subtasks"] if s["id"] == "check")
    assert check["status"] == "skipped" and check["error"] == "dependency 'docs' failed"


def test_land_totals_every_jobs_usage_and_plan_divides_the_budget(tmp_path: Path) -> None:
    config = {".github/ci-swarm.yml": "max_agents: 4\nbudget:\n  usd: 3\n  tokens: 1000\n"}
    origin, _, outputs = _fan_out(tmp_path, _two_waves(), config)
    assert (outputs["budget_share"], outputs["tokens_share"]) == ("1.500000", "500")  # min(4, 2 jobs)
    _agents(tmp_path, origin, ["docs", "left"], "--max-usd", outputs["budget_share"], "--rpm", "30")
    for sub, usage in (("docs", {"input_tokens": 100, "cost_usd": 0.5}), ("left", {"output_tokens": 20})):
        sidecar = tmp_path / "bundles" / f"agent-{sub}" / f"{sub}.bundle.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "usage": usage}))
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    proc, out = _land_outputs(tmp_path, lander)
    assert proc.returncode == 0, proc.stderr
    assert (out["usage_usd"], out["usage_tokens"]) == ("0.500000", "120")
    assert (out["budget_share"], out["tokens_share"]) == ("2.500000", "880")  # what is left, one job


def test_plan_fan_out_refuses_a_conflict_repair_policy_it_cannot_apply(tmp_path: Path) -> None:
    plan = {**_plan(), "merge": {"on_conflict": "redo"}, "checks": [{"name": "t", "run": ["true"]}]}
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(yaml.safe_dump(plan))
    repo = make_repo(tmp_path / "repo", {"shared.txt": SHARED})
    proc = run_cli("plan", "--fan-out", "--plan-file", str(plan_file), "--repo", str(repo), "--run-id", RUN)
    assert proc.returncode == 4
    assert "on_conflict: redo is not supported with --fan-out yet" in proc.stderr
    assert not _git(repo, "for-each-ref", f"refs/swarm/{RUN}", f"refs/heads/swarm/{RUN}")


def test_the_agent_job_writes_its_summary_with_the_outcome_and_the_error(tmp_path: Path) -> None:
    origin, _, _ = _fan_out(tmp_path, _plan(fail="tool crashed"))
    summary = tmp_path / "summary.md"
    env = {**clean_env(), "GITHUB_STEP_SUMMARY": str(summary)}
    for sub in ("docs", "left"):
        clone = _clone(origin, tmp_path / f"agent-{sub}", f"refs/swarm/{RUN}/state")
        run_cli("agent", "--run-id", RUN, "--subtask", sub, "--repo", str(clone), env=env)
    text = summary.read_text()
    assert text.count("### ci-swarm agent") == 2 and f"(run `{RUN}`)" in text
    docs, left = text.split("### ci-swarm agent `left`")
    assert "| `docs` | failed |" in docs and "error: " in docs and "tool crashed" in docs
    assert "| `left` | succeeded |" in left and "error:" not in left
    assert f"on `swarm/{RUN}-agents/left`" in left and "commit: `none`" not in left


def test_land_all_remaining_runs_the_later_waves_in_the_land_job_with_the_same_tree(tmp_path: Path) -> None:
    origin, plan_file, _ = _fan_out(tmp_path, _two_waves())
    _agents(tmp_path, origin, ["docs", "left"])
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    report_file = tmp_path / "rest.json"
    args = ("land", "--run-id", RUN, "--bundles", str(tmp_path / "bundles"), "--repo", str(lander))
    proc = run_cli(*args, "--all-remaining", "--report-json", str(report_file))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_file.read_text())
    assert [(m["subtask"], m["order"]) for m in report["merges"]] == [("docs", 1), ("left", 2), ("check", 3)]
    check = next(s for s in report["subtasks"] if s["id"] == "check")
    assert check["status"] == "succeeded" and check["branch"] == f"swarm/{RUN}-agents/check"
    assert any(n.startswith("waves 2-2 ran in the land job") for n in report["notes"])
    tip = _git(lander, "rev-parse", f"refs/heads/swarm/{RUN}")
    assert report["integration_commit"] == tip
    assert _git(lander, "rev-parse", f"swarm/{RUN}-agents/check^") == check["start_commit"]
    assert not _git(lander, "for-each-ref", "refs/heads/ci-swarm-land-job/")
    assert _git(lander, "rev-parse", f"{tip}^{{tree}}") == _single_machine_tree(tmp_path, origin, plan_file)


def test_land_all_remaining_without_results_runs_every_wave_there(tmp_path: Path) -> None:
    origin, plan_file, _ = _fan_out(tmp_path, _two_waves())
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    out = tmp_path / "out.txt"
    args = ("land", "--run-id", RUN, "--repo", str(lander), "--all-remaining", "--matrix-out", str(out))
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["done"] == "true" and outputs["matrix"] == ""
    tip = _git(lander, "rev-parse", f"refs/heads/swarm/{RUN}")
    assert outputs["tip"] == tip
    assert _git(lander, "rev-parse", f"{tip}^{{tree}}") == _single_machine_tree(tmp_path, origin, plan_file)


def test_the_files_of_a_landed_result_are_its_commits_not_what_its_sidecar_says(tmp_path: Path) -> None:
    plan = _plan()
    plan["subtasks"][0]["paths"] = ["src/**"]  # docs writes docs.txt: outside what it owns
    origin, _, _ = _fan_out(tmp_path, plan)
    _agents(tmp_path, origin, ["docs", "left", "right"])
    sidecar = tmp_path / "bundles" / "agent-docs" / "docs.bundle.json"
    data = json.loads(sidecar.read_text())
    assert data["files"] == ["docs.txt"]
    sidecar.write_text(json.dumps({**data, "files": ["src/ok.py", "../../etc/passwd"]}))  # the sidecar lies
    lander = _clone(origin, tmp_path / "land-job", f"refs/swarm/{RUN}/state")
    proc, report = _land(tmp_path, lander)
    assert proc.returncode in (0, 2), proc.stderr
    docs = next(s for s in report["subtasks"] if s["id"] == "docs")
    assert docs["status"] == "succeeded"
    assert (docs["files"], docs["outside_paths"]) == (["docs.txt"], ["docs.txt"])


@pytest.mark.parametrize("where", ["plan", "config"])
def test_plan_fan_out_refuses_a_review_panel_it_cannot_hold(tmp_path: Path, where: str) -> None:
    """No job of a fanned-out run holds the panel's vote: its pull request would open ready for review
    as if the panel had approved. Refused before anything is written, as on_conflict is — the plan's
    ``review:`` and the config's alike."""
    review = {"voters": 1, "approve": 1}
    plan = {**_plan(), "review": review} if where == "plan" else _plan()
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(yaml.safe_dump(plan))
    config = {".github/ci-swarm.yml": yaml.safe_dump({"review": review})} if where == "config" else {}
    repo = make_repo(tmp_path / "repo", {"shared.txt": SHARED, **config})
    proc = run_cli("plan", "--fan-out", "--plan-file", str(plan_file), "--repo", str(repo), "--run-id", RUN)
    assert proc.returncode == 4
    assert "review: the review panel is not supported with --fan-out yet" in proc.stderr
    assert not _git(repo, "for-each-ref", f"refs/swarm/{RUN}", f"refs/heads/swarm/{RUN}")

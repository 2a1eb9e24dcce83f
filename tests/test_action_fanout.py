"""The Action's fan-out jobs (input ``fan_out: plan | land``) against the fake GitHub, each job in its own
checkout as on separate runners: the plan job routes and admits the label event, pushes the integration
branch and the run state and starts the progress comment; the agent jobs are ``ci-swarm agent --bundle`` in
fresh clones; the land job publishes like a normal run (one pull request, review comments on the conflict,
the progress comment finished, agent branches pushed); a second land publishes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_swarm import git
from ci_swarm.action import main
from ci_swarm.errors import UsageError
from ci_swarm.github.fanout_job import one_chunk_per_wave
from ci_swarm.github.inputs import parse_inputs
from ci_swarm.models import Plan, Subtask
from ci_swarm.naming import agent_branch
from tests.act_helpers import World, make_world, replace_sub, swarm_plan, write_sub
from tests.helpers import run_cli
from tests.openapi_helpers import traffic_problems

SUBTASKS = (
    write_sub("greet", "src/greet.py", "def greet():\n    return 'hi'\n"),
    write_sub("farewell", "src/farewell.py", "def bye():\n    return 'bye'\n"),
    replace_sub("docs", "README.md", "Run it.", "Run it, then greet.", role="documenter"),
    replace_sub("tone", "README.md", "Run it.", "Run it with care.", role="deployer"),  # a conflict
)
IDS = ["greet", "farewell", "docs", "tone"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The fake GitHub world; every exchange must match GitHub's OpenAPI description, none a 422."""
    problems: list[str] = []
    for each in make_world(tmp_path):
        yield each
        problems = traffic_problems(each.fake.traffic)
    assert not problems, "GitHub traffic off the description:\n" + "\n".join(problems)


def checkout(world: World, name: str) -> Path:
    """A runner's fresh checkout of the repository (``actions/checkout`` with ``fetch-depth: 0``)."""
    path = world.tmp / name
    git.run(world.tmp, "clone", "--quiet", str(world.bare), str(path))
    return path


def job_env(world: World, payload: dict[str, object], workspace: Path, **inputs: str) -> dict[str, str]:
    world.outputs.write_text("")  # each job has its own $GITHUB_OUTPUT
    return {**world.env("issues", payload, **inputs), "GITHUB_WORKSPACE": str(workspace)}


def agent_jobs(world: World, run_id: str, ids: list[str]) -> Path:
    """One ``ci-swarm agent`` per subtask in its own clone, each handing over a bundle (as the workflow)."""
    bundles = world.tmp / "bundles"
    for sub in ids:
        clone = checkout(world, f"agent-{sub}")
        ref = f"refs/swarm/{run_id}/state"
        git.run(clone, "fetch", "--quiet", str(world.bare), f"{ref}:{ref}")
        bundle = bundles / f"swarm-{run_id}-{sub}" / f"{sub}.bundle"
        done = run_cli(
            "agent", "--run-id", run_id, "--subtask", sub, "--bundle", str(bundle), "--repo", str(clone)
        )
        assert done.returncode == 0, done.stderr
    return bundles


def plan_job(world: World, issue: object, **inputs: str) -> dict[str, str]:
    payload = world.labeled(issue)
    assert main(job_env(world, payload, checkout(world, "plan-job"), fan_out="plan", **inputs)) == 0
    return world.read_outputs()


def land_job(
    world: World, issue: object, run_id: str, bundles: Path, name: str = "land-job", **inputs: str
) -> int:
    workspace = checkout(world, name)
    env = job_env(world, world.labeled(issue), workspace, fan_out="land", run_id=run_id, **inputs)
    env["CI_SWARM_BUNDLES_DIR"] = str(bundles)
    return main(env)


def progress_comments(world: World, number: int) -> list[str]:
    return [c.body for c in world.repo().get_issue(number).get_comments() if "ci-swarm:progress" in c.body]


def api_writes(world: World) -> list[str]:
    return [w for w in world.writes() if w.split()[1].startswith("/repos/")]


def test_plan_then_land_publishes_one_pr_with_every_agents_work_and_lands_once(world: World) -> None:
    issue = world.issue("Four things", f"Please.\n\n{swarm_plan(*SUBTASKS)}", labels=("swarm",))
    planned = plan_job(world, issue, budget_usd="2")
    run_id = planned["run_id"]
    # each of the 4 jobs running at once (max_agents 4) gets a quarter of the budget; no token budget
    assert (planned["budget_share"], planned["tokens_share"]) == ("0.500000", "")
    assert [row["subtask"] for row in json.loads(planned["matrix"])["include"]] == IDS
    assert (planned["chunks"], planned["waves"], planned["branch"]) == ("1", "1", f"swarm/{run_id}")
    base = git.rev_parse(world.bare, "refs/heads/main")
    assert git.rev_parse(world.bare, f"refs/heads/swarm/{run_id}") == base  # pushed at the base
    assert git.try_rev_parse(world.bare, f"refs/swarm/{run_id}/state") is not None
    (queued,) = progress_comments(world, issue.number)
    assert "4 agent job(s) queued" in queued and run_id in queued
    assert [label.name for label in world.repo().get_issue(issue.number).get_labels()] == []

    bundles = agent_jobs(world, run_id, IDS)
    assert land_job(world, issue, run_id, bundles) == 0  # the README conflict is recorded, all work kept
    out = world.read_outputs()
    assert (out["run_id"], out["branch"], out["conflicts"], out["failed"]) == (
        run_id,
        f"swarm/{run_id}",
        "1",
        "0",
    )
    pr = world.repo().get_pull(int(out["pr_number"]))
    assert pr.title == "ci-swarm: Four things" and f"Closes #{issue.number}" in pr.body
    assert sorted(f.filename for f in pr.get_files()) == ["README.md", "src/farewell.py", "src/greet.py"]
    (comment,) = list(pr.get_review_comments())
    assert comment.path == "README.md" and "Run it with care." in comment.body
    (finished,) = progress_comments(world, issue.number)  # the plan job's comment, finished by land
    assert "finished" in finished and "Pull request: #" in finished and "queued" not in finished
    assert {agent_branch("swarm", run_id, sub) for sub in IDS} <= world.remote_branches()
    state = git.run(world.bare, "show", f"refs/swarm/{run_id}/state:published.json").text
    assert json.loads(state)["outputs"]["pr_number"] == int(out["pr_number"])
    readme = git.run(world.bare, "show", f"refs/heads/swarm/{run_id}:README.md").text
    assert "Run it, then greet." in readme

    before = api_writes(world)
    assert land_job(world, issue, run_id, bundles, "land-again") == 0
    assert api_writes(world) == before  # nothing published again
    assert world.read_outputs()["pr_number"] == out["pr_number"]
    assert len(world.repo().get_pulls(state="all").get_page(0)) == 1


def test_a_missing_and_a_tampered_result_fail_their_subtasks_and_the_rest_lands(world: World) -> None:
    issue = world.issue("Four things", swarm_plan(*SUBTASKS), labels=("swarm",))
    run_id = plan_job(world, issue)["run_id"]
    bundles = agent_jobs(world, run_id, ["greet", "docs", "tone"])  # farewell's job never reported
    tone = bundles / f"swarm-{run_id}-tone" / "tone.bundle.json"
    sidecar = json.loads(tone.read_text())
    greet = json.loads((bundles / f"swarm-{run_id}-greet" / "greet.bundle.json").read_text())
    sidecar["commit"] = greet["commit"]  # a result that claims another commit than its bundle holds
    tone.write_text(json.dumps(sidecar))
    assert land_job(world, issue, run_id, bundles) == 3
    out = world.read_outputs()
    assert (out["failed"], out["conflicts"]) == ("2", "0")
    pr = world.repo().get_pull(int(out["pr_number"]))
    assert sorted(f.filename for f in pr.get_files()) == ["README.md", "src/greet.py"]
    assert "no result from its job" in pr.body and "result refused" in pr.body
    (finished,) = progress_comments(world, issue.number)
    assert "failed" in finished


WAVES = (
    write_sub("greet", "src/greet.py", "def greet():\n    return 'hi'\n"),
    write_sub("farewell", "src/farewell.py", "def bye():\n    return 'bye'\n"),
    {**replace_sub("polish", "src/greet.py", "'hi'", "'hello'"), "depends_on": ["greet"]},  # wave 2
)


def matrix_ids(outputs: dict[str, str]) -> list[str]:
    return [row["subtask"] for row in json.loads(outputs["matrix"])["include"]]


def test_a_two_wave_plan_lands_wave_by_wave_and_publishes_one_pr_at_the_end(world: World) -> None:
    issue = world.issue("Two waves", swarm_plan(*WAVES), labels=("swarm",))
    planned = plan_job(world, issue, budget_usd="2")
    run_id = planned["run_id"]
    assert (planned["waves"], planned["wave"], planned["chunks"]) == ("2", "1", "1")
    assert matrix_ids(planned) == ["greet", "farewell"]
    assert "wave 1 of 2" in progress_comments(world, issue.number)[0]
    base = git.rev_parse(world.bare, "refs/heads/main")

    assert land_job(world, issue, run_id, agent_jobs(world, run_id, ["greet", "farewell"])) == 0
    out = world.read_outputs()
    assert (out["done"], out["wave"], out["next_wave"], out["waves"]) == ("false", "1", "2", "2")
    assert matrix_ids(out) == ["polish"] and out["chunks"] == "1"
    assert out["budget_share"] == "2.000000"  # one job runs next: the whole budget (nothing spent) is its
    assert len(world.repo().get_pulls(state="all").get_page(0)) == 0  # no pull request yet
    (queued,) = progress_comments(world, issue.number)
    assert "Wave 1 of 2 landed" in queued and "wave 2 queued" in queued and "finished" not in queued
    assert {agent_branch("swarm", run_id, sub) for sub in ("greet", "farewell")} <= world.remote_branches()
    assert git.rev_parse(world.bare, f"refs/heads/swarm/{run_id}") == base  # published by the last land
    tip = out["tip"]
    assert git.is_ancestor(world.bare, tip, f"refs/swarm/{run_id}/state")  # wave 2 starts from it

    before = api_writes(world)  # the wave's land job re-run: the same outputs, nothing written
    assert land_job(world, issue, run_id, world.tmp / "bundles", "land-1-again") == 0
    assert api_writes(world) == before
    again = world.read_outputs()
    assert (again["tip"], again["next_wave"], matrix_ids(again)) == (tip, "2", ["polish"])

    assert land_job(world, issue, run_id, agent_jobs(world, run_id, ["polish"]), "land-2") == 0
    last = world.read_outputs()
    assert (last["done"], last["wave"], last["failed"]) == ("true", "2", "0")
    (pr,) = world.repo().get_pulls(state="all").get_page(0)
    assert pr.number == int(last["pr_number"]) and f"Closes #{issue.number}" in pr.body
    assert sorted(f.filename for f in pr.get_files()) == ["src/farewell.py", "src/greet.py"]
    greet = git.run(world.bare, "show", f"refs/heads/swarm/{run_id}:src/greet.py").text
    assert "'hello'" in greet  # wave 2's agent edited what wave 1's wrote
    (finished,) = progress_comments(world, issue.number)
    assert "finished" in finished and f"#{pr.number}" in finished and "queued" not in finished
    agents = {agent_branch("swarm", run_id, sub) for sub in ("greet", "farewell", "polish")}
    assert agents <= world.remote_branches()


def test_all_remaining_runs_the_later_waves_in_the_land_job_and_publishes(world: World) -> None:
    issue = world.issue("Two waves", swarm_plan(*WAVES), labels=("swarm",))
    run_id = plan_job(world, issue)["run_id"]
    bundles = agent_jobs(world, run_id, ["greet", "farewell"])
    assert land_job(world, issue, run_id, bundles, all_remaining="true") == 0
    out = world.read_outputs()
    assert (out["done"], out["wave"], out["failed"]) == ("true", "1", "0")
    (pr,) = world.repo().get_pulls(state="all").get_page(0)
    assert sorted(f.filename for f in pr.get_files()) == ["src/farewell.py", "src/greet.py"]
    greet = git.run(world.bare, "show", f"refs/heads/swarm/{run_id}:src/greet.py").text
    assert "'hello'" in greet  # wave 2 ran in the land job, from wave 1's tip
    assert "ran in the land job" in pr.body
    (finished,) = progress_comments(world, issue.number)
    assert "finished" in finished and "queued" not in finished
    assert agent_branch("swarm", run_id, "polish") in world.remote_branches()


def test_a_wave_input_ahead_of_the_run_is_refused(world: World) -> None:
    issue = world.issue("Two waves", swarm_plan(*WAVES), labels=("swarm",))
    run_id = plan_job(world, issue)["run_id"]
    bundles = agent_jobs(world, run_id, ["greet", "farewell"])
    assert land_job(world, issue, run_id, bundles, wave="2") == UsageError.exit_code
    (comment,) = progress_comments(world, issue.number)
    assert "wave 2 cannot land before wave 1" in comment
    plan = job_env(world, world.labeled(issue), checkout(world, "plan-2"), fan_out="plan", wave="1")
    assert main(plan) == UsageError.exit_code  # wave/all_remaining are land's inputs


def test_a_wave_of_more_than_one_matrix_chunk_is_refused() -> None:
    def plan(count: int) -> Plan:
        subs = tuple(Subtask(id=f"s{i}", title="t", role="builder") for i in range(count))
        later = Subtask(id="later", title="t", role="builder", depends_on=("s0",))
        return Plan(task="many", subtasks=(*subs, later))

    one_chunk_per_wave(plan(256))  # 256 jobs: one matrix
    with pytest.raises(UsageError, match="wave 1 of this plan has 257 subtasks"):
        one_chunk_per_wave(plan(257))


def test_a_second_plan_job_of_the_same_run_id_is_refused(world: World) -> None:
    issue = world.issue("Four things", swarm_plan(*SUBTASKS[:1]), labels=("swarm",))
    env = job_env(world, world.labeled(issue), checkout(world, "plan-1"), fan_out="plan", run_id="fan-7-1")
    assert main(env) == 0
    again = job_env(world, world.labeled(issue), checkout(world, "plan-2"), fan_out="plan", run_id="fan-7-1")
    assert main(again) != 0  # the state ref and the branch exist: the lease refuses to replace them


def test_land_needs_the_run_id_and_the_inputs_are_checked(world: World) -> None:
    issue = world.issue("One thing", swarm_plan(*SUBTASKS[:1]), labels=("swarm",))
    before = api_writes(world)
    assert main(job_env(world, world.labeled(issue), world.workspace, fan_out="land")) == UsageError.exit_code
    with pytest.raises(UsageError, match="input fan_out"):
        parse_inputs({"CI_SWARM_FAN_OUT": "agent"})
    with pytest.raises(UsageError, match="input run_id"):
        parse_inputs({"CI_SWARM_RUN_ID": "a/b"})
    dry = job_env(world, world.labeled(issue), world.workspace, fan_out="plan", dry_run="true")
    assert main(dry) == UsageError.exit_code
    assert api_writes(world) == before  # refused before anything was written


def test_a_swarm_comment_on_a_pr_fans_out_onto_the_prs_branch(world: World) -> None:
    """The agents start from the PR's head (which the default-branch checkouts lack: the plan pushes it as
    the integration branch), and land pushes onto the PR's own branch, leaving its body alone."""
    pr = world.pull_request("feature", {"src/feature.py": "value = 1\n"})
    head = pr.head.sha
    plan = swarm_plan(write_sub("tests", "tests/test_feature.py", "def test_value():\n    assert True\n"))
    payload = world.commented(pr.number, f"/swarm add a test for it\n{plan}", on_pr=True)

    def env(name: str, **inputs: str) -> dict[str, str]:
        world.outputs.write_text("")
        return {
            **world.env("issue_comment", payload, **inputs),
            "GITHUB_WORKSPACE": str(checkout(world, name)),
        }

    assert main(env("plan-job", fan_out="plan")) == 0
    run_id = world.read_outputs()["run_id"]
    assert git.rev_parse(world.bare, f"refs/heads/swarm/{run_id}") == head
    bundles = agent_jobs(world, run_id, ["tests"])
    assert main({**env("land-job", fan_out="land", run_id=run_id), "CI_SWARM_BUNDLES_DIR": str(bundles)}) == 0
    out = world.read_outputs()
    assert (out["branch"], out["pr_number"]) == ("feature", str(pr.number))
    after = world.repo().get_pull(pr.number)
    assert git.is_ancestor(world.bare, head, after.head.sha) and after.head.sha != head
    assert sorted(f.filename for f in after.get_files()) == ["src/feature.py", "tests/test_feature.py"]
    assert after.body == "Please review."
    (progress,) = progress_comments(world, pr.number)
    assert "finished" in progress and "Run report" in progress


def test_a_review_panel_in_the_config_is_refused_by_the_plan_job(world: World) -> None:
    """No fan-out job holds the panel's vote: a config's `review:` would open the PR ready for review as if
    the panel had approved, so the plan job refuses it before anything is pushed."""
    world.commit_to_default({".github/ci-swarm.yml": "review: {voters: 3, approve: 2}\n"})
    issue = world.issue("Four things", swarm_plan(*SUBTASKS[:1]), labels=("swarm",))
    before = world.remote_branches()
    env = job_env(world, world.labeled(issue), checkout(world, "plan-review"), fan_out="plan")
    assert main(env) == 4
    assert world.remote_branches() == before  # nothing pushed

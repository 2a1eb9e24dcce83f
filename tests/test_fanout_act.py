"""The reusable fan-out workflow (``.github/workflows/swarm-fan-out.yml``, issue #13): its shape — who may
write, how the matrix runs, what crosses between jobs — and the example caller that uses it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

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

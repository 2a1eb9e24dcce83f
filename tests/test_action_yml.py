"""action.yml and the workflows: metadata sanity, no shell injection, the real actionlint over all of them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm.action import Settings

ROOT = Path(__file__).resolve().parents[1]
ACTIONLINT = Path(sys.executable).parent / "actionlint"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
EXAMPLES = ["swarm-on-label.yml", "swarm-on-comment.yml", "swarm-maintenance.yml"]
INPUTS = {
    "anthropic_api_key",
    "github_token",
    "config",
    "label",
    "command",
    "max_agents",
    "model",
    "agent",
    "budget_usd",
    "base_branch",
    "branch_prefix",
    "dry_run",
}
OUTPUTS = {"run_id", "branch", "pr_number", "pr_url", "conflicts", "failed", "cost_usd", "tokens", "speedup"}


def load_yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # `on:` stays a string key
    return data


ACTION = load_yaml(ROOT / "action.yml")


def actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACTIONLINT), "-shellcheck=", "-pyflakes=", "-oneline", *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_action_is_composite_without_docker_or_other_actions() -> None:
    runs = ACTION["runs"]
    assert runs["using"] == "composite"
    assert "image" not in runs
    for step in runs["steps"]:
        assert "uses" not in step, step.get("name")
        assert step["shell"] == "bash"
        assert "run" in step


def test_no_expression_inside_a_run_script() -> None:
    """Inputs reach the scripts only through env: — `${{ }}` inside run: would be a shell-injection hole."""
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in step["run"], step["name"]


def test_inputs_and_outputs_are_the_documented_ones() -> None:
    assert set(ACTION["inputs"]) == INPUTS
    assert set(ACTION["outputs"]) == OUTPUTS
    assert ACTION["inputs"]["github_token"]["default"] == "${{ github.token }}"
    assert ACTION["inputs"]["config"]["default"] == ".github/ci-swarm.yml"
    assert ACTION["inputs"]["dry_run"]["default"] == "false"
    for name, spec in {**ACTION["inputs"], **ACTION["outputs"]}.items():
        assert spec.get("description", "").strip(), f"{name} has no description"
    for name, spec in ACTION["outputs"].items():
        assert spec["value"] == f"${{{{ steps.swarm.outputs.{name} }}}}"


def test_every_input_is_mapped_into_the_entry_step_env() -> None:
    steps = {step["id"]: step for step in ACTION["runs"]["steps"]}
    env = steps["swarm"]["env"]
    mapped = set(re.findall(r"\$\{\{ inputs\.(\w+) \}\}", " ".join(env.values())))
    assert mapped == INPUTS
    assert env["ANTHROPIC_API_KEY"] == "${{ inputs.anthropic_api_key }}"
    assert (
        "GITHUB_TOKEN" not in env
    )  # the token travels under our own name, never as an agent-visible default
    assert steps["swarm"]["run"].strip() == 'exec "$CI_SWARM_PYTHON" -m ci_swarm action'


def test_entry_reads_every_variable_the_action_sets() -> None:
    env = next(step["env"] for step in ACTION["runs"]["steps"] if step["id"] == "swarm")
    samples = {"CI_SWARM_MAX_AGENTS": "3", "CI_SWARM_BUDGET_USD": "1.5", "CI_SWARM_AGENT": "command"}
    samples["CI_SWARM_DRY_RUN"] = "true"
    unset = Settings.from_env({})
    for name in env:
        if name != "CI_SWARM_PYTHON":
            assert Settings.from_env({name: samples.get(name, "some-value")}) != unset, f"{name} is ignored"


def test_install_uses_a_venv_under_runner_temp_from_the_action_path() -> None:
    install = next(step for step in ACTION["runs"]["steps"] if step["id"] == "install")
    assert install["env"] == {"CI_SWARM_SOURCE": "${{ github.action_path }}"}
    script = install["run"]
    assert '"${RUNNER_TEMP:-/tmp}/ci-swarm-venv"' in script
    assert 'python3 -m venv "$venv"' in script
    assert '"$venv/bin/python" -m pip install' in script
    assert 'python=$venv/bin/python" >> "$GITHUB_OUTPUT"' in script


def test_install_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for step in ACTION["runs"]["steps"]:
        result = subprocess.run([bash, "-n"], input=step["run"], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflows_are_minimal_and_never_cancel_themselves(name: str) -> None:
    workflow = load_yaml(ROOT / ".github" / "workflows" / name)
    permissions = workflow["permissions"]
    assert set(permissions.values()) == {"write"}
    assert set(permissions) <= {"contents", "pull-requests", "issues"}
    (job,) = workflow["jobs"].values()
    assert job["concurrency"]["cancel-in-progress"] == "false"
    if name != "swarm-maintenance.yml":
        assert "github.event.issue.number" in job["concurrency"]["group"]
    uses = [step["uses"] for step in job["steps"] if "uses" in step]
    assert uses == ["actions/checkout@v5", "ci-swarm/ci-swarm@v1"]
    checkout = job["steps"][0]
    assert checkout["with"]["persist-credentials"] == "false"  # no token in .git/config for agents to read
    swarm = job["steps"][-1]
    assert swarm["with"]["anthropic_api_key"] == "${{ secrets.ANTHROPIC_API_KEY }}"


def test_comment_workflow_listens_to_created_only() -> None:
    workflow = load_yaml(ROOT / ".github" / "workflows" / "swarm-on-comment.yml")
    assert workflow["on"] == {"issue_comment": {"types": ["created"]}}
    assert load_yaml(ROOT / ".github" / "workflows" / "swarm-on-label.yml")["on"] == {
        "issues": {"types": ["labeled"]}
    }


def test_ci_workflow_runs_make_test() -> None:
    workflow = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "make test" in runs
    assert workflow["permissions"] == {"contents": "read"}


def test_actionlint_passes_on_every_workflow() -> None:
    assert WORKFLOWS
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_checks_the_act_workflows_against_action_yml_metadata() -> None:
    """actionlint reads ./action.yml for `uses: ./`: the act workflows' inputs and outputs must be there."""
    files = sorted((ROOT / "tests" / "data" / "act").glob("*.yml"))
    assert files
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_an_unknown_input(tmp_path: Path) -> None:
    """The lint above means something: a misspelt input or output is an error against our metadata."""
    (tmp_path / ".git").mkdir()
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    bad = workflows / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v5\n      - id: s\n        uses: ./\n        with:\n"
        "          max_agent: 3\n"
        '      - run: echo "${{ steps.s.outputs.pr_link }}"\n'
    )
    result = actionlint(bad, cwd=tmp_path)
    assert result.returncode == 1
    assert 'input "max_agent" is not defined in action "ci-swarm"' in result.stdout
    assert 'property "pr_link" is not defined' in result.stdout

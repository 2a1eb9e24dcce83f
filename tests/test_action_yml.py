"""action.yml and the workflows: metadata sanity, no shell injection, the real actionlint over all of them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm.action import Settings
from ci_swarm.github.inputs import secret_values

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
    "sandbox",
    "fan_out",
    "run_id",
    "bundles_dir",
    "wave",
    "all_remaining",
}
# the entry step's variables that carry a secret input into its shell (never into Python's environment)
SECRET_ENV = {
    "github_token": "CI_SWARM_SECRET_GITHUB_TOKEN",
    "anthropic_api_key": "CI_SWARM_SECRET_ANTHROPIC_KEY",
}
OUTPUTS = {
    "run_id",
    "branch",
    "pr_number",
    "pr_url",
    "conflicts",
    "failed",
    "cost_usd",
    "tokens",
    "parallelism",
    "speedup",
    "matrix",
    "chunks",
    "waves",
    "wave",
    "next_wave",
    "done",
    "budget_share",
    "tokens_share",
}


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
    # the key and the token reach only the step's shell, under names nothing else reads, and go to files
    assert env[SECRET_ENV["anthropic_api_key"]] == "${{ inputs.anthropic_api_key }}"
    assert env[SECRET_ENV["github_token"]] == "${{ inputs.github_token }}"
    assert "GITHUB_TOKEN" not in env and "ANTHROPIC_API_KEY" not in env  # no agent-visible default names
    assert steps["swarm"]["run"].strip().splitlines()[-1] == 'exec "$CI_SWARM_PYTHON" -m ci_swarm action'


def test_entry_reads_every_variable_the_action_sets() -> None:
    env = next(step["env"] for step in ACTION["runs"]["steps"] if step["id"] == "swarm")
    samples = {"CI_SWARM_MAX_AGENTS": "3", "CI_SWARM_BUDGET_USD": "1.5", "CI_SWARM_AGENT": "command"}
    samples["CI_SWARM_DRY_RUN"] = "true"
    samples["CI_SWARM_SANDBOX"] = "none"
    samples["CI_SWARM_FAN_OUT"] = "plan"
    samples["CI_SWARM_WAVE"] = "2"
    samples["CI_SWARM_ALL_REMAINING"] = "true"
    unset = Settings.from_env({})
    for name in env:
        if name != "CI_SWARM_PYTHON" and name not in SECRET_ENV.values():  # those become files
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


# --- secrets by file, never in the environment of the process that runs the swarm ---------------------


def test_no_step_env_carries_a_secret_input_except_into_the_file_writing_shell() -> None:
    for step in ACTION["runs"]["steps"]:
        for name, value in step.get("env", {}).items():
            secret = [i for i in SECRET_ENV if f"inputs.{i}" in value]
            if secret:
                assert step["id"] == "swarm" and name == SECRET_ENV[secret[0]], (step["id"], name)
                script = step["run"]
                assert f'"${name}" >' in script  # written to a file …
                assert f"unset {name}" in script or name in script.split("unset ", 1)[1].splitlines()[0]
                assert script.index("unset ") < script.index("exec ")  # … and gone before the exec


def run_entry_step(tmp_path: Path, token: str, key: str) -> dict[str, str]:
    """The entry step's script run by bash with the step's env (a stand-in for Python that records its own
    exec-time environment, /proc/$$/environ, and the secret files' contents and modes)."""
    step = next(step for step in ACTION["runs"]["steps"] if step["id"] == "swarm")
    record = tmp_path / "record"
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\n"
        f"tr '\\0' '\\n' < /proc/$$/environ > {record}.environ\n"
        f'for f in "$CI_SWARM_GITHUB_TOKEN_FILE" "${{CI_SWARM_ANTHROPIC_KEY_FILE:-}}"; do\n'
        f'  [ -n "$f" ] && stat -c "%a %n" "$f" "$(dirname "$f")" >> {record}.modes'
        f' && cat "$f" >> {record}.values && echo >> {record}.values\n'
        "done\n"
        f'echo "$@" > {record}.argv\n'
    )
    fake_python.chmod(0o755)
    runner_temp = tmp_path / "runner_temp"
    runner_temp.mkdir()
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(runner_temp), "CI_SWARM_PYTHON": str(fake_python)}
    env[SECRET_ENV["github_token"]] = token
    env[SECRET_ENV["anthropic_api_key"]] = key
    env["INPUT_GITHUB_TOKEN"] = token  # should a runner also set the INPUT_ form, it is dropped too
    bash = shutil.which("bash")
    assert bash is not None
    subprocess.run([bash, "-e", "-c", step["run"]], env=env, check=True, timeout=30)
    return {
        kind: (tmp_path / f"record.{kind}").read_text() if (tmp_path / f"record.{kind}").exists() else ""
        for kind in ("environ", "modes", "values", "argv")
    }


def test_the_entry_step_execs_python_without_the_secrets_in_its_environment(tmp_path: Path) -> None:
    token, key = "ghs_StepT0kenValue1234567890", "sk-ant-StepKeyValue-0987654321"
    seen = run_entry_step(tmp_path, token, key)
    assert seen["argv"].strip() == "-m ci_swarm action"
    assert token not in seen["environ"] and key not in seen["environ"]
    assert (
        "CI_SWARM_GITHUB_TOKEN_FILE=" in seen["environ"] and "CI_SWARM_ANTHROPIC_KEY_FILE=" in seen["environ"]
    )
    assert seen["values"].splitlines() == [token, key]
    modes = [line.split()[0] for line in seen["modes"].splitlines()]
    assert modes == ["600", "700", "600", "700"]  # the files, and the fresh mktemp -d directory
    assert str(tmp_path / "runner_temp") in seen["modes"]


def test_without_a_key_no_key_file_is_named(tmp_path: Path) -> None:
    seen = run_entry_step(tmp_path, "ghs_StepT0kenValue1234567890", "")
    assert "CI_SWARM_ANTHROPIC_KEY_FILE" not in seen["environ"]
    assert seen["values"].splitlines() == ["ghs_StepT0kenValue1234567890"]


def test_settings_read_the_secret_files_and_delete_them(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    (folder / "github_token").write_text("ghs_FromAFile0123456789")
    (folder / "anthropic_key").write_text("sk-ant-FromAFile-0123456789")
    env = {
        "CI_SWARM_GITHUB_TOKEN_FILE": str(folder / "github_token"),
        "CI_SWARM_ANTHROPIC_KEY_FILE": str(folder / "anthropic_key"),
    }
    settings = Settings.from_env(env)
    assert settings.token == "ghs_FromAFile0123456789"
    assert settings.anthropic_key == "sk-ant-FromAFile-0123456789" and settings.has_anthropic_key
    assert not folder.exists()  # files read once and deleted, and their directory with them
    assert "FromAFile" not in repr(settings)
    assert {"ghs_FromAFile0123456789", "sk-ant-FromAFile-0123456789"} <= set(settings.secrets)


def test_the_legacy_environment_form_still_works() -> None:
    settings = Settings.from_env(
        {"CI_SWARM_GITHUB_TOKEN": "ghs_legacy0123456789", "ANTHROPIC_API_KEY": "k" * 20}
    )
    assert settings.token == "ghs_legacy0123456789" and settings.anthropic_key == "k" * 20


def test_a_secret_file_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    from ci_swarm.errors import UsageError

    with pytest.raises(UsageError, match="CI_SWARM_GITHUB_TOKEN_FILE"):
        Settings.from_env({"CI_SWARM_GITHUB_TOKEN_FILE": str(tmp_path / "missing")})


def test_secret_values_of_the_runner_environment() -> None:
    env = {
        "DATABASE_URL": "postgres://app:hunter2hunter2@db.internal:5432/app",
        "OPENAI_API_KEY": "sk-openai-value-123456",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T000/B000/XXXXXXXX",
        "SENTRY_DSN": "https://abcdef0123456789@o1.ingest.sentry.invalid/1",
        "DOCKER_PASSWORD": "docker-pass-value",
        "AWS_SECRET_ACCESS_KEY": "aws/secret+value/0123456789",
        "PUBLIC_URL": "https://example.org/app",  # no password: not secret
        "HOME": "/home/runner",
        "PWD": "/work/repo",
        "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",  # a path, not a secret
        "GITHUB_REPOSITORY": "octo/demo",
    }
    found = set(secret_values(env))
    assert found == {env[n] for n in list(env)[:6]}

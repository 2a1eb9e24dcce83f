"""Every untrusted process through the sandbox, end to end: ``ci-swarm run`` (and ``python -m ci_swarm
action``) with command agents and a Claude agent's ``run_command``, the ``user`` backend exercised for real
(this machine and CI run as root: when the account cannot be made these tests fail, they never skip)."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_swarm import git, sandbox
from ci_swarm.action import main as action_main
from ci_swarm.cli import main as cli_main
from ci_swarm.errors import UsageError
from ci_swarm.models import AgentSpec
from ci_swarm.service import UNSANDBOXED, choose_sandbox
from ci_swarm.testing.anthropic_script import Conversation, Script, subtask_match
from tests.act_helpers import TOKEN, World, make_world, swarm_plan
from tests.anthropic_helpers import serve_fake
from tests.fixtures import make_repo
from tests.helpers import plan_of, run_plan_cli, scripted
from tests.helpers import sh_agent as sh
from tests.test_action_security import command_sub, run_action_process
from tests.test_sandbox import alive

FILES = {"README.md": "# r\n", "src/app.py": "print('app')\n"}
SECRETS = {
    "GITHUB_TOKEN": "ghs_SandboxScenarioToken0123456789ab",
    "ANTHROPIC_API_KEY": "sk-ant-sandbox-scenario-key-0123456789",
    "DATABASE_URL": "postgres://u:pw-sandbox-scenario@h/db",
    "OPENAI_API_KEY": "sk-sandbox-scenario-openai-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-sandbox-scenario-secret-0123456789",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T0/B0/sandbox-scenario",
    "SENTRY_DSN": "https://sandbox-scenario-dsn@sentry.example/1",
    "DOCKER_PASSWORD": "docker-sandbox-scenario-password",
}
RUNNER_FILES = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")
# env, the parent's (ci-swarm's) exec-time environment, every process's environment, who it ran as
DUMP = (
    "env > env.txt; "
    "{ tr '\\0' '\\n' < /proc/$PPID/environ; } > ppid.txt 2>&1; "
    "tr '\\0' ' ' < /proc/$PPID/cmdline > parent.txt; "
    "for f in /proc/[0-9]*/environ; do { tr '\\0' '\\n' < \"$f\"; } 2>/dev/null; done > all.txt; "
    "id -u > uid.txt; true"
)


@pytest.fixture
def repo(open_dir: Path) -> Path:
    return make_repo(open_dir / "repo", FILES)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def run(
    repo: Path, *subtasks: dict[str, Any], args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return run_plan_cli(repo, repo.parent, *subtasks, args=args, env=env)


def the(data: dict[str, Any], sub_id: str) -> dict[str, Any]:
    return next(s for s in data["subtasks"] if s["id"] == sub_id)


def committed(repo: Path, commit: str) -> dict[str, str]:
    """Every file of ``commit`` (as committed on the agent's branch)."""
    return {
        path: git.read_blob(repo, f"{commit}:{path}").decode(errors="replace")
        for path in git.tree_files(repo, commit)
    }


# ── through the CLI ─────────────────────────────────────────────────────────────────────────────────


def test_a_command_agent_dumping_every_environment_commits_no_secret(repo: Path) -> None:
    proc, data = run(repo, sh("dump", DUMP), env=SECRETS)
    assert proc.returncode == 0, proc.stderr
    assert data["sandbox"] == "user"
    files = committed(repo, the(data, "dump")["commit"])
    assert {"env.txt", "ppid.txt", "parent.txt", "all.txt", "uid.txt"} <= set(files)
    assert "HOME=" in files["env.txt"] and "ci_swarm" in files["parent.txt"]  # it ran, under ci-swarm
    assert "Permission denied" in files["ppid.txt"]
    assert files["uid.txt"].strip() != "0"
    seen = "".join(files.values()) + proc.stdout + proc.stderr + json.dumps(data)
    for name, value in SECRETS.items():
        assert value not in seen, name


def test_a_command_agent_cannot_touch_the_runners_files(repo: Path, open_dir: Path) -> None:
    paths = {name: open_dir / name.lower() for name in RUNNER_FILES}
    for path in paths.values():
        path.write_text("the runner's\n")
        path.chmod(0o600)  # root-owned, as the runner's are the runner user's
    targets = " ".join(shlex.quote(str(p)) for p in paths.values())
    script = (
        f'for f in {targets} "$GITHUB_ENV" "$GITHUB_PATH" "$GITHUB_OUTPUT" "$GITHUB_STEP_SUMMARY"; do '
        "echo 'BASH_ENV=/tmp/evil' >> \"$f\"; done 2> errors.txt; echo tried > tried.txt"
    )
    proc, data = run(repo, sh("runner", script), env={name: str(path) for name, path in paths.items()})
    assert proc.returncode == 0, proc.stderr
    for path in paths.values():
        assert path.read_text() == "the runner's\n"
        assert path.stat().st_mode & 0o777 == 0o600
    files = committed(repo, the(data, "runner")["commit"])
    assert files["tried.txt"] == "tried\n" and "Permission denied" in files["errors.txt"]


SNOOP_PY = """
import glob, os
seen = []
for path in [f'/proc/{os.getppid()}/environ', *glob.glob('/proc/[0-9]*/environ'), *RUNNER]:
    try:
        with open(path, 'rb') as f:
            seen.append(f.read().decode(errors='replace'))
    except OSError as exc:
        seen.append(type(exc).__name__)
for path in RUNNER:
    try:
        open(path, 'a').write('NODE_OPTIONS=--require=/tmp/evil\\n')
    except OSError as exc:
        seen.append('write ' + type(exc).__name__)
seen.append(repr(sorted(os.environ.items())))
open('snoop.txt', 'w').write('\\n'.join(seen))
print('uid', os.getuid(), seen[0], seen[-2])
"""


def test_a_claude_agents_run_command_sees_nothing(repo: Path, open_dir: Path) -> None:
    paths = {name: open_dir / name.lower() for name in RUNNER_FILES}
    for path in paths.values():
        path.write_text("the runner's\n")
        path.chmod(0o600)
    code = f"RUNNER = {[str(p) for p in paths.values()]!r}\n{SNOOP_PY}"
    (repo / ".github").mkdir()
    (repo / ".github" / "ci-swarm.yml").write_text('allowed_commands:\n  - ["python3", "-c"]\n')
    git.commit_all(repo, "config\n", git.Identity("t", "t@example.com"))
    calls = (
        {"tool": "run_command", "input": {"argv": ["python3", "-c", code]}},
        {"tool": "finish", "input": {"summary": "looked around"}},
    )
    script = Script(
        conversations=(Conversation("snoop", subtask_match("snoop"), calls),), min_cache_tokens=64
    )
    claude = {"id": "snoop", "role": "builder", "title": "snoop", "agent": {"kind": "claude"}}
    with serve_fake(script) as fake:
        env = {**SECRETS, "ANTHROPIC_BASE_URL": fake.base_url, **{n: str(p) for n, p in paths.items()}}
        proc, data = run(repo, claude, env=env)
        bodies = json.dumps([r.body for r in fake.requests])
    assert proc.returncode == 0, proc.stderr
    assert data["sandbox"] == "user"
    assert "PermissionError" in bodies and "uid 0" not in bodies  # the tool result the model saw
    snoop = committed(repo, the(data, "snoop")["commit"])["snoop.txt"]
    assert snoop.count("write PermissionError") == len(RUNNER_FILES)
    for name, value in SECRETS.items():
        assert value not in bodies + snoop + proc.stderr, name
    for path in paths.values():
        assert path.read_text() == "the runner's\n"


def test_sandbox_none_runs_as_ci_swarm_and_the_report_says_so(repo: Path) -> None:
    proc, data = run(
        repo,
        sh("mine", "id -u > uid.txt"),
        args=("--sandbox", "none", "--report-md", str(repo.parent / "r.md")),
    )
    assert proc.returncode == 0, proc.stderr
    assert data["sandbox"] == "none"
    assert UNSANDBOXED in data["notes"]
    assert committed(repo, the(data, "mine")["commit"])["uid.txt"] == "0\n"
    markdown = (repo.parent / "r.md").read_text()
    assert "agents ran unsandboxed" in markdown and "| none |" in markdown


def test_scripted_agents_need_no_sandbox(repo: Path) -> None:
    proc, data = run(repo, scripted("s", edits=[{"write": "s.txt", "content": "s\n"}]))
    assert proc.returncode == 0, proc.stderr
    assert data["sandbox"] == "not needed"


def test_without_a_backend_a_command_agent_run_stops_before_it_starts(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sandbox, "detect_backend", lambda: None)
    plan = repo.parent / "plan.yml"
    plan.write_text(yaml.safe_dump({"version": 1, "task": "t", "subtasks": [sh("c", "echo hi > hi.txt")]}))
    with pytest.raises(SystemExit) as exited:
        cli_main(["run", "--plan", str(plan), "--repo", str(repo), "--quiet"])
    assert exited.value.code == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sandbox none" in err and "no sandbox is available" in err
    assert not [
        ref for ref in git.out(repo, "for-each-ref", "--format=%(refname)").split() if "swarm/" in ref
    ]


def test_without_a_backend_scripted_runs_and_sandbox_none_runs(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "detect_backend", lambda: None)
    plan = repo.parent / "plan.yml"
    plan.write_text(yaml.safe_dump({"version": 1, "task": "t", "subtasks": [scripted("s"), sh("c", "true")]}))
    with pytest.raises(SystemExit) as exited:
        cli_main(["run", "--plan", str(plan), "--repo", str(repo), "--quiet", "--sandbox", "none"])
    assert exited.value.code == 0
    only_scripted = plan_of(scripted("s"))
    assert choose_sandbox(only_scripted, AgentSpec("scripted"), (), None) is None


def test_which_runs_need_a_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "detect_backend", lambda: None)
    only_scripted = plan_of(scripted("a"))
    allowed = (("pytest",),)
    assert choose_sandbox(only_scripted, AgentSpec("scripted"), allowed, None) is None
    assert choose_sandbox(only_scripted, AgentSpec("claude"), allowed, None) is None  # a default nobody uses
    claude_alone = plan_of({**scripted("c"), "agent": {"kind": "claude"}})
    assert choose_sandbox(claude_alone, AgentSpec("scripted"), (), None) is None  # no run_command
    with pytest.raises(UsageError, match="--sandbox none"):
        choose_sandbox(
            plan_of({**scripted("c"), "agent": {"kind": "claude"}}), AgentSpec("scripted"), allowed, None
        )
    policy = choose_sandbox(plan_of(sh("c", "true")), AgentSpec("scripted"), (), "none")
    assert policy is not None and policy.unsandboxed


def test_hanging_agents_and_setsid_children_end_at_the_timeout(repo: Path) -> None:
    hang = "echo $$ > main.pid; exec sleep 1000"
    orphan = (
        "setsid sh -c 'echo $$ > child.pid; exec sleep 1000' & "
        "while [ ! -s child.pid ]; do sleep 0.05; done; echo $$ > main.pid; exec sleep 1000"
    )
    proc, data = run(repo, sh("hang", hang), sh("orphan", orphan), args=("--timeout", "4"))
    assert proc.returncode == 3, proc.stderr
    pids = []
    for sub_id, names in (("hang", ("main.pid",)), ("orphan", ("main.pid", "child.pid"))):
        sub = the(data, sub_id)
        assert sub["status"] == "timed_out"
        files = committed(repo, sub["commit"])  # the timed-out work is kept on its branch
        pids += [int(files[name]) for name in names]
    assert len(pids) == 3 and not [pid for pid in pids if alive(pid)]


# ── through the Action ──────────────────────────────────────────────────────────────────────────────


def test_through_the_action_an_allowed_command_agent_dumping_env_pushes_no_token(world: World) -> None:
    world.commit_to_default({".github/ci-swarm.yml": 'allowed_commands:\n  - ["sh", "-c"]\n'})
    issue = world.issue(
        "Look around", f"Please.\n\n{swarm_plan(command_sub(['sh', '-c', DUMP]))}", labels=("swarm",)
    )
    done = run_action_process(
        world, world.env("issues", world.labeled(issue))
    )  # the token in its environment
    assert done.returncode == 0, done.stdout + done.stderr
    pr = world.repo().get_pull(int(world.read_outputs()["pr_number"]))
    assert {f.filename for f in pr.get_files()} >= {"env.txt", "ppid.txt", "all.txt"}
    for name in ("env.txt", "ppid.txt", "all.txt", "uid.txt"):
        blob = git.try_read_blob(world.bare, pr.head.sha, name)  # as pushed
        assert blob is not None and TOKEN.encode() not in blob, name
    assert git.try_read_blob(world.bare, pr.head.sha, "uid.txt") != b"0\n"
    assert TOKEN not in done.stdout + done.stderr


def test_through_the_action_no_backend_stops_a_command_run_before_it_starts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "detect_backend", lambda: None)
    world.commit_to_default({".github/ci-swarm.yml": 'allowed_commands:\n  - ["sh", "-c"]\n'})
    plan = swarm_plan(command_sub(["sh", "-c", "echo hi > hi.txt"]))
    issue = world.issue("Make a file", f"Please.\n\n{plan}", labels=("swarm",))
    assert action_main(world.env("issues", world.labeled(issue))) == 4
    assert not {b for b in world.remote_branches() if b.startswith("swarm/")}
    said = [c.body for c in world.repo().get_issue(issue.number).get_comments()]
    assert any("no sandbox is available" in body for body in said)

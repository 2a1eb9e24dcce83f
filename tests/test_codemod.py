"""Command agents for codemods (issue #11): ``{paths}`` as one argument per path, chunked below the argv
bound, ``{paths_file}``, ``success:`` (exit codes or ``changes``), a failing shard's partial work and the
files its output blames, ``--shard`` refused without an agent that edits, and the Done-when: a sharded
``ruff``/``pyupgrade`` run gives the same tree as the tool run serially in a plain clone."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_codemod
from ci_swarm import git
from ci_swarm.agents import pathargs, success
from ci_swarm.agents.command import CommandAgent, check_options
from ci_swarm.config import config_from_text
from ci_swarm.errors import ConfigError, PlanError
from ci_swarm.models import AgentSpec, Plan, Subtask
from ci_swarm.plan import freeze
from ci_swarm.ports import AgentContext
from ci_swarm.sandbox import ProcessResult
from ci_swarm.workspace import Workspace
from tests.fixtures import make_repo
from tests.helpers import SANDBOX_PY, clean_env, run_cli

# --- {paths} and chunks ----------------------------------------------------------------------------


def test_a_whole_paths_argument_is_one_argument_per_path_and_joined_inside_a_larger_one() -> None:
    argv = pathargs.expand(
        ["tool", "--py311-plus", "{paths}", "--files={paths}", "{id}"], {"id": "s1"}, ["a b.py", "c.py"]
    )
    assert argv == ("tool", "--py311-plus", "a b.py", "c.py", "--files=a b.py c.py", "s1")
    assert pathargs.expand(["tool", "{paths}"], {}, []) == ("tool",)
    assert pathargs.expand(["tool", "@{paths_file}"], {}, ["x"], "/tmp/l.txt") == ("tool", "@/tmp/l.txt")


def test_chunks_keep_every_argv_within_the_bound_in_order() -> None:
    paths = [f"src/pkg/module_{i:05d}.py" for i in range(500)]
    template = ["pyupgrade", "--py311-plus", "{paths}"]

    def render(chunk: Any) -> tuple[str, ...]:
        return pathargs.expand(template, {}, chunk)

    parts = pathargs.chunks(paths, render, 2_000)
    assert len(parts) > 1
    assert [p for part in parts for p in part] == paths  # each path once, in order
    assert all(pathargs.argv_size(render(part)) <= 2_000 for part in parts)
    assert pathargs.chunks(paths, render, 10**9) == (tuple(paths),)
    # a path inside a larger argument counts as many times as it appears
    twice = ["t", "{paths}", "--also={paths}"]
    for part in pathargs.chunks(paths, lambda c: pathargs.expand(twice, {}, c), 2_000):
        assert pathargs.argv_size(pathargs.expand(twice, {}, part)) <= 2_000
    assert 0 < pathargs.argv_bound() <= pathargs.ARGV_BOUND


# --- success ---------------------------------------------------------------------------------------


def result(code: int | None, *, timed_out: bool = False, output: str = "") -> ProcessResult:
    return ProcessResult(
        code, None if code is not None else 9, timed_out, False, output, False, 0.1, "u", True
    )


def test_success_rules() -> None:
    assert success.parse(None) == frozenset({0})
    assert success.parse([0, 1]) == frozenset({0, 1})
    assert success.parse("changes") == "changes"
    for bad in ([], [256], [True], "sometimes", {"a": 1}, 1):
        with pytest.raises(PlanError, match="'success' must be a list of exit codes"):
            success.parse(bad, "subtask 'a'")
    assert success.judge(frozenset({0, 1}), result(1))
    assert not success.judge(frozenset({0, 1}), result(2))
    assert success.judge("changes", result(7))
    assert not success.judge("changes", result(None))  # a signal is never a success
    assert not success.judge("changes", result(0, timed_out=True))
    assert success.describe(frozenset({1, 0})) == "exit 0 or 1"
    with pytest.raises(PlanError, match="success"):
        check_options({"run": ["x"], "success": "maybe"}, "subtask 'a'")


def test_failed_files_are_the_shard_files_a_problem_line_names() -> None:
    output = (
        "Rewriting src/ok.py\n"
        "src/latin.py is non-utf-8 (not supported)\n"
        "error: Failed to parse src/bad.py:3:1: Unexpected token\n"
        "error: something about other/file.py\n"
    )
    paths = ["src/ok.py", "src/latin.py", "src/bad.py"]
    assert success.failed_files(output, paths) == ("src/latin.py", "src/bad.py")


# --- config ----------------------------------------------------------------------------------------


def test_success_in_the_config_and_a_job_is_the_command_agents_default() -> None:
    config = config_from_text(
        "agent: {kind: command, run: [pyupgrade, '{paths}']}\n"
        "success: [0, 1]\n"
        "maintenance:\n"
        "  - {name: up, cron: '0 4 * * 0', shard: {pattern: '**/*.py', task: up}, success: changes,\n"
        "     agent: {kind: command, run: [ruff, '{paths}']}}\n"
        "  - {name: own, cron: '0 4 * * 0', shard: {pattern: '**/*.py', task: up},\n"
        "     agent: {kind: command, run: [ruff, '{paths}'], success: [0, 2]}}\n"
    )
    assert config.success == (0, 1)
    assert config.agent is not None and config.agent.options["success"] == (0, 1)
    up, own = config.maintenance
    assert up.success == "changes" and up.agent is not None and up.agent.options["success"] == "changes"
    assert own.agent is not None and own.agent.options["success"] == (0, 2)  # its own option wins
    with pytest.raises(ConfigError, match="success"):
        config_from_text("success: sometimes\n")


# --- the agent: chunks, paths_file, success --------------------------------------------------------


@pytest.fixture
def ws(open_dir: Path) -> Workspace:
    repo = make_repo(open_dir / "repo", {"README.md": "# r\n"})
    base = git.head_commit(repo)
    git.create_branch(repo, "swarm/t/a", base)
    tree = open_dir / "worktrees" / "a"
    git.worktree_add(repo, tree, "swarm/t/a")
    return Workspace(tree, "swarm/t/a", base, "a", ())


def run_agent(spec: AgentSpec, ws: Workspace, paths: tuple[str, ...]) -> Any:
    sub = Subtask(id="a", role="builder", title="t", paths=paths, agent=spec)
    lines: list[str] = []
    ctx = AgentContext("run1", "t", Plan("t", (sub,)), None, lines.append)
    return asyncio.run(CommandAgent(spec).run(sub, ws, ctx)), lines


RECORD_ARGS = (
    "import sys; open('seen.txt', 'a').write(''.join(a + '\\n' for a in sys.argv[1:])); print(len(sys.argv))"
)


def test_a_long_paths_list_runs_in_chunks_below_the_argv_bound(ws: Workspace) -> None:
    paths = tuple(f"src/some/deeply/nested/package/module_number_{i:06d}.py" for i in range(4_000))
    assert pathargs.argv_size(paths) > pathargs.argv_bound()  # too long for one run
    spec = AgentSpec("command", freeze({"run": [SANDBOX_PY, "-c", RECORD_ARGS, "{paths}"]}))
    outcome, lines = run_agent(spec, ws, paths)
    assert outcome.ok, outcome.error
    assert (ws.root / "seen.txt").read_text().splitlines() == list(paths)  # each once, in order
    runs = [line for line in lines if "(paths chunk " in line and ": $ " in line]
    assert len(runs) >= 2
    assert "runs over chunks of the paths" in outcome.summary
    assert outcome.log.count("[paths chunk ") == len(runs)
    assert pathargs.argv_size(outcome.command) <= pathargs.argv_bound()


def test_paths_file_lists_the_paths_one_per_line(ws: Workspace) -> None:
    code = "import sys, shutil; shutil.copy(sys.argv[1], 'listed.txt')"
    spec = AgentSpec("command", freeze({"run": [SANDBOX_PY, "-c", code, "{paths_file}"]}))
    outcome, _ = run_agent(spec, ws, ("a b.py", "c.py"))
    assert outcome.ok, outcome.error
    assert (ws.root / "listed.txt").read_text() == "a b.py\nc.py\n"
    assert not Path(outcome.command[-1]).exists()  # removed afterwards


def test_success_codes_and_changes_decide_and_the_exit_status_is_reported(ws: Workspace) -> None:
    exit1 = [SANDBOX_PY, "-c", "raise SystemExit(1)"]
    plain, _ = run_agent(AgentSpec("command", freeze({"run": exit1})), ws, ())
    assert not plain.ok and plain.error == "exited 1" and plain.exit_status == 1
    codes, _ = run_agent(AgentSpec("command", freeze({"run": exit1, "success": [0, 1]})), ws, ())
    assert codes.ok and codes.exit_status == 1 and codes.summary.endswith("exited 1")
    exit3 = [SANDBOX_PY, "-c", "raise SystemExit(3)"]
    changes, _ = run_agent(AgentSpec("command", freeze({"run": exit3, "success": "changes"})), ws, ())
    assert changes.ok and changes.exit_status == 3
    failing, _ = run_agent(AgentSpec("command", freeze({"run": exit3, "success": [0, 1]})), ws, ())
    assert not failing.ok and failing.error == "exited 3 (success: exit 0 or 1)"


# --- through the CLI ------------------------------------------------------------------------------


def test_a_failing_shard_commits_its_partial_work_and_names_the_files_its_output_blames(
    tmp_path: Path,
) -> None:
    files = {f"src/f{i}.py": f"x = {i}\n" for i in range(4)}
    repo = make_repo(tmp_path / "repo", files)
    tool = (
        "import sys\n"
        "for p in sys.argv[1:]:\n"
        "    if p.endswith('f3.py'):\n"
        "        print(f'error: cannot parse {p}'); sys.exit(2)\n"
        "    open(p, 'a').write('# done\\n')\n"
    )
    report = tmp_path / "r.json"
    proc = run_cli(
        "run", "--repo", str(repo), "--shard", "src/*.py", "--agents", "2", "--task", "fix",
        "--agent", "command", "--agent-command", shlex.join([SANDBOX_PY, "-c", tool, "{paths}"]),
        "--quiet", "--report", str(report), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    data = {s["id"]: s for s in json.loads(report.read_text())["subtasks"]}
    good, bad = data["shard-1"], data["shard-2"]
    assert good["status"] == "succeeded" and sorted(good["files"]) == ["src/f0.py", "src/f1.py"]
    assert bad["status"] == "failed" and bad["exit_status"] == 2
    assert bad["summary"].startswith("partial: ")
    assert bad["error"] == "exited 2: error: cannot parse src/f3.py; files its output names: src/f3.py"
    assert bad["files"] == ["src/f2.py"] and bad["diffstat"]["files"] == 1  # f2 was fixed before f3 failed
    assert git.read_blob(repo, f"{bad['commit']}:src/f2.py") == b"x = 2\n# done\n"


def test_shard_without_an_agent_that_edits_is_exit_4(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"src/a.py": "a = 1\n"})
    proc = run_cli("run", "--repo", str(repo), "--shard", "src/*.py", "--task", "modernise", "--quiet")
    assert proc.returncode == 4
    assert (
        "--shard needs an agent that edits files: pass --agent command --agent-command '…' "
        "or set ANTHROPIC_API_KEY" in proc.stderr
    )
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not git.run(repo, "branch", "--list", "swarm/*").text.strip()  # nothing ran
    job = "maintenance:\n  - {name: up, cron: '0 4 * * 0', shard: {pattern: 'src/*.py', task: up}}\n"
    (repo / ".github").mkdir()
    (repo / ".github" / "ci-swarm.yml").write_text(job)
    proc = run_cli("run", "--repo", str(repo), "--job", "up", "--quiet")
    assert proc.returncode == 4
    assert "the shard of maintenance job 'up' needs an agent that edits files" in proc.stderr


# --- Done-when: sharded ruff / pyupgrade == serial --------------------------------------------------


def generated_repo(root: Path, count: int = 60) -> Path:
    """60 old-style modules (the benchmark's, one class each) and a ruff config."""
    files = dict(bench_codemod.module(i, 1) for i in range(count))
    return make_repo(root, {**files, "pyproject.toml": bench_codemod.PYPROJECT, "README.md": "# generated\n"})


@pytest.fixture
def tools(open_dir: Path) -> dict[str, list[str]]:
    """The benchmark's codemods, where a sandbox account can run them (the test's venv and its interpreter
    may sit in a 0700 home): ruff's binary copied to a 0755 directory, pyupgrade run by the system Python."""
    return bench_codemod.tools(open_dir / "tools")


def serial_tree(repo: Path, tmp: Path, argv: list[str]) -> str:
    """The tool run once over every matching file in a plain clone: the resulting tree."""
    clone = tmp / "serial"
    git.run(tmp, "clone", "-q", str(repo), str(clone))
    files = sorted(git.run(clone, "ls-files", "--", "*.py").text.split())
    subprocess.run([*argv, *files], cwd=clone, check=False, capture_output=True, env=clean_env())
    git.run(clone, "add", "-A")
    return git.run(clone, "write-tree").text.strip()


@pytest.mark.parametrize(("name", "success_rule"), [("ruff", None), ("pyupgrade", [0, 1])])
def test_sharded_codemod_gives_the_same_tree_as_the_serial_run(
    tools: dict[str, list[str]], tmp_path: Path, name: str, success_rule: list[int] | None
) -> None:
    repo = generated_repo(tmp_path / "repo")
    argv = tools[name]  # ruff check --fix --no-cache --select UP,I --exit-zero / pyupgrade --py311-plus
    config = tmp_path / "ci-swarm.yml"
    config.write_text(f"success: {json.dumps(success_rule)}\n" if success_rule else "timeout: 600\n")
    report, md = tmp_path / "r.json", tmp_path / "r.md"
    command = shlex.join([*argv, "{paths}"])
    proc = run_cli(
        "run", "--repo", str(repo), "--shard", "**/*.py", "--agents", "4", "--task", f"modernise with {name}",
        "--agent", "command", "--agent-command", command, "--config", str(config),
        "--report", str(report), "--report-md", str(md), "--quiet", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + report.read_text()
    data = json.loads(report.read_text())
    expected = serial_tree(repo, tmp_path, argv)
    assert git.tree_of(repo, data["integration_commit"]) == expected
    assert expected != git.tree_of(repo, git.head_commit(repo))  # the codemod changed something
    subtasks = data["subtasks"]
    assert [s["status"] for s in subtasks] == ["succeeded"] * 4
    for sub in subtasks:
        assert sub["command"][: len(argv)] == argv
        assert sub["command"][len(argv) :] == sub["paths"]  # one argument per path
        assert sub["exit_status"] in (success_rule or [0])
        assert sub["diffstat"]["files"] == len(sub["files"]) > 0
    if name == "pyupgrade":
        assert all(s["exit_status"] == 1 for s in subtasks)  # it rewrote files: 1, a success here
        assert all("Rewriting" in s["output_tail"] for s in subtasks)
    text = md.read_text()
    assert text.count("- command: ") == 4 and text.count("- exit status: ") == 4
    assert text.count("output (last lines)") == 4 and "- diffstat: " in text

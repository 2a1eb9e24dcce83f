"""A maintenance swarm at size: a real codemod from PyPI sharded over 4 and 8 command agents
(``ci-swarm run --shard "**/*.py" --agents N --agent command --agent-command '<tool> … {paths}'``, through
the sandbox) against the same codemod run serially over every file in a plain checkout, side by side in
one run (serial, 4 agents, 8 agents, in turn, per round).

Each figure is a whole process timed from outside (wall seconds): the swarm's includes everything —
start-up, planning, the agents' clones and the sandbox hand-over, the merges and the reports; the serial
one is the tool alone (in argv chunks of the same bound the agents use). ``ratio`` is swarm / serial
(below 1: the swarm is faster). Every swarm's integration tree is checked against the serial tree
(``same_tree``). ``outside_paths_check_s``: the report's "writes outside owned paths" check
(``diffstat.outside_paths``) timed again in the benchmark's process over the run's shards — quadratic in a
shard's files (every changed file against every owned path, a regex compiled per pair), it is most of the
swarm's time at this size.

Configurations, to show where the crossover lies: ``pyupgrade --py311-plus`` (pure Python, one process,
one core) on small files and on files 8 times larger (more work per file), and ``ruff check --fix
--select UP,I --exit-zero`` (native and already multi-threaded: little per-file work to share out).

Size: ``CODEMOD_FILES`` files (default 4,000; the issue asks for 20,000, which takes far longer than a
loaded shared machine allows), ``CODEMOD_ROUNDS`` rounds (default 1).

Run: ``python -m benchmarks.bench_codemod`` (or ``python -m benchmarks codemod``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.agents import pathargs
from ci_swarm.diffstat import outside_paths

FILES = int(os.environ.get("CODEMOD_FILES", "4000"))
ROUNDS = int(os.environ.get("CODEMOD_ROUNDS", "1"))
SYSTEM_PY = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"

BLOCK = """\
class Thing{i}_{k}(object):
    def __init__(self, items: List[int]) -> None:
        self.items = items

    def describe(self) -> Optional[str]:
        return "thing %d has %s items" % ({i}, len(self.items))

    def table(self) -> Dict[str, int]:
        return {{"{{}}".format(k): v for k, v in enumerate(self.items)}}


"""
HEAD = "import sys\nimport os\nfrom typing import Dict, List, Optional\nimport collections\n\n\n"


PYPROJECT = '[tool.ruff]\ntarget-version = "py311"\n'  # the same rules wherever ruff runs


def module(i: int, blocks: int) -> tuple[str, str]:
    """The path and old-style text (``%`` formatting, ``typing.List``, unsorted imports, ``(object)``) of
    generated module ``i`` with ``blocks`` classes."""
    path = f"pkg{i % 20:02d}/sub{i % 7}/mod_{i:05d}.py"
    body = "".join(BLOCK.format(i=i, k=k) for k in range(blocks))
    return path, HEAD + body + 'print("argv: {}".format(sys.argv), os.sep, collections.deque())\n'


def generate(root: Path, files: int, blocks: int) -> Path:
    """A repository of ``files`` old-style modules in 20 packages, ``blocks`` classes each."""
    root.mkdir(parents=True)
    git.run(root.parent, "init", "-q", "-b", "main", str(root))
    for i in range(files):
        rel, text = module(i, blocks)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "pyproject.toml").write_text(PYPROJECT)
    git.run(root, "add", "-A")
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", *ident, "commit", "-q", "-m", "generated"], cwd=root, check=True)
    return root


def tools(where: Path) -> dict[str, list[str]]:
    """The codemods where a sandbox account can run them: ruff's binary copied to a 0755 directory;
    pyupgrade and tokenize_rt (pure Python) copied beside it and run by the system Python."""
    import pyupgrade  # type: ignore[import-untyped]
    import tokenize_rt  # type: ignore[import-untyped]

    where.mkdir(mode=0o755)
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    shutil.copy2(ruff, where / "ruff")
    lib = where / "lib"
    shutil.copytree(
        Path(pyupgrade.__file__).parent, lib / "pyupgrade", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy2(tokenize_rt.__file__, lib / "tokenize_rt.py")
    for path in (where, *where.rglob("*")):
        path.chmod(0o755 if path.is_dir() or path.name == "ruff" else 0o644)
    run = f"import sys; sys.path.insert(0, {str(lib)!r}); from pyupgrade._main import main; sys.exit(main())"
    return {
        "pyupgrade": [SYSTEM_PY, "-c", run, "--py311-plus"],
        "ruff": [str(where / "ruff"), "check", "--fix", "--no-cache", "--select", "UP,I", "--exit-zero"],
    }


def serial(repo: Path, scratch: Path, argv: list[str]) -> tuple[float, str]:
    """The tool over every ``.py`` file of a fresh clone (clone untimed): seconds and the tree."""
    shutil.rmtree(scratch, ignore_errors=True)
    git.run(repo.parent, "clone", "-q", str(repo), str(scratch))
    files = sorted(git.run(scratch, "ls-files", "--", "*.py").text.split())

    def render(chunk: Any) -> tuple[str, ...]:
        return (*argv, *chunk)

    began = time.monotonic()
    for chunk in pathargs.chunks(files, render, pathargs.argv_bound()):
        subprocess.run(render(chunk), cwd=scratch, capture_output=True, check=False)
    seconds = time.monotonic() - began
    git.run(scratch, "add", "-A")
    return seconds, git.run(scratch, "write-tree").text.strip()


def swarm(repo: Path, work: Path, argv: list[str], agents: int, success: str) -> dict[str, Any]:
    """``ci-swarm run --shard`` with ``agents`` command agents, timed as a whole process."""
    config, report = work / "ci-swarm.yml", work / f"report-{agents}.json"
    config.write_text(f"success: {success}\ntimeout: 3600\n")
    command = shlex.join([*argv, "{paths}"])
    args = ["run", "--repo", str(repo), "--shard", "**/*.py", "--agents", str(agents), "--max-agents"]
    args += [str(agents), "--task", "codemod", "--agent", "command", "--agent-command", command]
    args += ["--config", str(config), "--quiet", "--report", str(report)]
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ci_swarm", *args], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError(f"swarm of {agents} exited {proc.returncode}: {proc.stderr[-2000:]}")
    data = json.loads(report.read_text())
    subs = data["subtasks"]
    began = time.monotonic()  # the run's check of each shard's changed files against its owned paths, again
    for sub in subs:
        outside_paths(sub["files"], sub["paths"])
    return {
        "outside_paths_check_s": round(time.monotonic() - began, 2),
        "seconds": seconds,
        "tree": git.tree_of(repo, data["integration_commit"]),
        "reported_wall_s": data["wall_seconds"],
        "setup_s_sum": round(sum(s.get("setup_seconds", 0.0) for s in subs), 2),
        "agent_s_max": round(max(s["seconds"] for s in subs), 2),
    }


def measure(name: str, argv: list[str], success: str, blocks: int, root: Path) -> dict[str, Any]:
    repo = generate(root / "repo", FILES, blocks)
    rows: dict[str, list[float]] = {"serial": [], "agents_4": [], "agents_8": []}
    detail: dict[str, Any] = {}
    same = True
    for _ in range(ROUNDS):
        seconds, tree = serial(repo, root / "serial", argv)
        rows["serial"].append(seconds)
        for agents in (4, 8):
            run = swarm(repo, root, argv, agents, success)
            rows[f"agents_{agents}"].append(run["seconds"])
            same = same and run["tree"] == tree
            detail[f"agents_{agents}"] = {k: v for k, v in run.items() if k not in ("seconds", "tree")}
    median = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    out: dict[str, Any] = {"files": FILES, "classes_per_file": blocks, "serial_s": median["serial"]}
    for agents in (4, 8):
        key = f"agents_{agents}"
        out[f"swarm_{agents}_s"] = median[key]
        out[f"ratio_{agents}"] = round(median[key] / median["serial"], 2) if median["serial"] else None
        out[f"swarm_{agents}"] = detail[key]
    out["same_tree"] = same
    print(f"{name}: {json.dumps(out)}", flush=True)
    return out


def main() -> dict[str, Any]:
    results: dict[str, Any] = {"files": FILES, "rounds": ROUNDS, "load_before": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="bench-codemod-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        argv = tools(base / "tools")
        configs = [
            ("pyupgrade_small", argv["pyupgrade"], "[0, 1]", 1),
            ("pyupgrade_large", argv["pyupgrade"], "[0, 1]", 8),
            ("ruff_small", argv["ruff"], "[0]", 1),
        ]
        for name, command, success, blocks in configs:
            work = base / name
            work.mkdir(mode=0o755)
            results[name] = measure(name, command, success, blocks, work)
    results["load_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

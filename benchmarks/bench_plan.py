"""Plan checking at real sizes: ``ci-swarm plan --shard`` over a generated repository of 2,100 ``.py`` files
in nested directories, and a generated 10,000-subtask plan (chains of dependencies, per-package files and
test globs, directory globs, a few deliberate overlaps) loaded and validated.

Each measurement runs in its own Python process (``python -c``), which reports its wall time, its CPU time
(user + system: what the wall time would be on an idle core) and its peak RSS (``resource.getrusage``);
the figures include importing ci-swarm:

* shard_2100: ``ci-swarm plan --shard "**/*.py" --agents 8 --task ...`` end to end (s, MB);
* validate_10k: ``load_plan`` of the JSON and of the YAML file (parse + structure + graph checks +
  ownership overlap, as ``plan`` and ``run`` do), then ``validate`` again on the loaded plan alone, and the
  number of overlap warnings found (s, MB); ``plan_cli_10k``: ``ci-swarm plan --plan`` on the JSON file.

Before this change (issue #11): 16.5 s for 774 files, 245 s for 2,059; 3,000 subtasks 65 s and 1.2 GB.

Run: ``python -m benchmarks.bench_plan`` (or ``python -m benchmarks plan``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ci_swarm import git

FILES = 2_100
SUBTASKS = 10_000

_CHILD = """
import json, resource, sys, time
began = time.perf_counter()
{body}
out["wall_s"] = round(time.perf_counter() - began, 3)
usage = resource.getrusage(resource.RUSAGE_SELF)
out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
out["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
print(json.dumps(out), file=sys.stderr)
"""


def _child(body: str, *args: str) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter; its figures come back as the last line of stderr."""
    code = _CHILD.format(body=textwrap.dedent(body))
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, timeout=900
    )
    try:
        result: dict[str, Any] = json.loads(proc.stderr.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"benchmark child failed: {proc.stderr[-2000:]}") from None
    return result


def _repo(root: Path) -> Path:
    """2,100 small ``.py`` files three directories deep (and a README), one commit."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git.run(repo, "init", "--quiet", "--initial-branch=main")
    for i in range(FILES):
        path = repo / f"pkg{i % 7}" / f"sub{i % 5}" / f"mod{i // 35}" / f"m{i:05}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n")
    (repo / "README.md").write_text("# bench\n")
    git.commit_all(repo, "base\n", git.SWARM_IDENTITY)
    return repo


def shard_2100(root: Path) -> dict[str, Any]:
    repo = _repo(root)
    body = """
    from ci_swarm.cli import main
    try:
        main(["plan", "--shard", "**/*.py", "--agents", "8", "--task", "modernise", "--repo", sys.argv[1]])
        out = {"exit": 0}
    except SystemExit as done:
        out = {"exit": done.code}
    """
    return {"files": FILES, "agents": 8, **_child(body, str(repo))}


def _subtask(i: int, rng: random.Random) -> dict[str, Any]:
    pkg = f"pkg{i // 100:03}"
    paths = [f"src/{pkg}/mod{i:05}.py", f"tests/{pkg}/test_{i:05}*.py"]
    if i % 100 == 99:
        paths.append(f"docs/{pkg}/**")
    if i % 1000 == 500:
        paths.append("src/pkg000/**")  # deliberate overlap with package 0's hundred subtasks
    deps = [f"t{i - 1:05}"] if i % 100 and i % 3 == 0 else []
    if i and i % 250 == 0:
        deps.append(f"t{rng.randrange(i):05}")
    return {
        "id": f"t{i:05}",
        "role": "builder",
        "title": f"modernise module {i}",
        "instructions": f"Apply the codemod to module {i} and its tests.",
        "paths": paths,
        "depends_on": sorted(set(deps)),
        "agent": {"kind": "scripted", "delay": 0},
    }


def validate_10k(root: Path) -> dict[str, Any]:
    rng = random.Random(11)
    data = {"version": 1, "task": "bench", "subtasks": [_subtask(i, rng) for i in range(SUBTASKS)]}
    as_json, as_yaml = root / "plan.json", root / "plan.yml"
    as_json.write_text(json.dumps(data))
    as_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    load = """
    from ci_swarm.agents import OPTION_VALIDATORS
    from ci_swarm.plan import load_plan, validate
    from pathlib import Path
    plan = load_plan(Path(sys.argv[1]), validators=OPTION_VALIDATORS)
    loaded = time.perf_counter() - began
    again = time.perf_counter()
    warnings = validate(plan, validators=OPTION_VALIDATORS)
    out = {
        "subtasks": len(plan.subtasks),
        "load_and_validate_s": round(loaded, 3),
        "validate_only_s": round(time.perf_counter() - again, 3),
        "overlap_warnings": len(warnings),
    }
    """
    cli = """
    from ci_swarm.cli import main
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["plan", "--plan", sys.argv[1]])
            out = {"exit": 0}
        except SystemExit as done:
            out = {"exit": done.code}
    """
    return {
        "json": _child(load, str(as_json)),
        "yaml": _child(load, str(as_yaml)),
        "plan_cli_json": _child(cli, str(as_json)),
    }


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        root = Path(tmp)
        (root / "shard").mkdir()
        (root / "plans").mkdir()
        results = {"shard_2100": shard_2100(root / "shard"), "validate_10k": validate_10k(root / "plans")}
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

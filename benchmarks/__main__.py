"""Run every benchmark and write the figures to docs/performance.md: ``python -m benchmarks``.

Each benchmark measures its comparisons side by side in one run (ratios), since machines are noisy.
``python -m benchmarks merge run`` runs a subset; the document is rewritten only with a full run.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "merge": "benchmarks.bench_merge",
    "run": "benchmarks.bench_run",
    "llm": "benchmarks.bench_llm",
    "setup": "benchmarks.bench_setup",
    "plan": "benchmarks.bench_plan",
    "verify": "benchmarks.bench_verify",
    "codemod": "benchmarks.bench_codemod",
    "pool": "benchmarks.bench_pool",
    "attempts": "benchmarks.bench_attempts",
}


# (figure, suite, path into its results, target, check)
TARGETS: list[tuple[str, str, tuple[str, ...], str, Any]] = [
    ("merge: object DB vs checkout + merge, 32 branches, 20k files", "merge", ("speedup",), "≥ 10×",
     lambda v: v >= 10),
    ("merge: cost on 20k files / on 2k files", "merge", ("size_cost_ratio",), "≤ 1.5×", lambda v: v <= 1.5),
    ("merge: ci-swarm merge / bare git loop, 128 branches, 20k files", "merge",
     ("vs_bare", "128x20k", "ratio"), "≤ 1.5×", lambda v: v <= 1.5),
    ("merge: git processes per merge, ci-swarm merge, 128 branches, 20k files", "merge",
     ("vs_bare", "128x20k", "processes_per_merge"), "≤ 3", lambda v: v <= 3),
    ("scheduler: efficiency, 16 subtasks × 2 s, cap 4 (median of 3)", "run",
     ("efficiency_16_cap4", "efficiency"), "≥ 0.95", lambda v: v >= 0.95),
    ("pool: efficiency, 20k files, 16 subtasks × 30 s, cap 4", "pool", ("goal_efficiency",), "≥ 0.9",
     lambda v: v >= 0.9),
    ("pool: fixed cost (wall − bound) at 32 subtasks / at 8, 20k files, 2 s agents, cap 4", "pool",
     ("fixed_cost_growth_32_over_8",), "≤ 1.5 (does not grow)", lambda v: v is not None and v <= 1.5),
    ("100 subtasks, cap 16: scheduler + merge overhead (s)", "run", ("overhead_100_cap16", "overhead_s"),
     "< 3 s", lambda v: v < 3),
    ("100 subtasks, cap 16: peak RSS (MB)", "run", ("overhead_100_cap16", "peak_rss_mb"), "< 300 MB",
     lambda v: v < 300),
    ("LLM: throughput under RPM/TPM limits with 429s, share of the allowed rate", "llm",
     ("throughput", "limiter", "of_allowed"), "≥ 0.90", lambda v: v >= 0.9),
    ("LLM: failed subtasks under those limits (plain semaphore, for comparison: see below)", "llm",
     ("throughput", "limiter", "failed_subtasks"), "0", lambda v: v == 0),
    ("LLM: share of the shared prefix read from cache, 8 parallel agents", "llm",
     ("cache", "warm_gate", "prefix_read_share"), "≥ 0.80", lambda v: v >= 0.8),
    ("plan --shard over 2,100 files, 8 agents, whole process (s)", "plan", ("shard_2100", "wall_s"), "< 2 s",
     lambda v: v < 2),
    ("10,000-subtask plan (JSON) loaded and validated, whole process (s)", "plan",
     ("validate_10k", "json", "wall_s"), "< 5 s", lambda v: v < 5),
    ("10,000-subtask plan (JSON): peak RSS (MB)", "plan", ("validate_10k", "json", "peak_rss_mb"),
     "< 500 MB", lambda v: v < 500),
    ("verification: 16 subtasks, one culprit, time / one check run", "verify", ("ratio",), "≤ 5",
     lambda v: v <= 5),
    ("codemod: pyupgrade sharded over 4 agents / serial, 8 classes a file, setup included", "codemod",
     ("pyupgrade_large", "ratio_4"), "< 1", lambda v: v is not None and v < 1),
    ("attempts: best-of-3 / single attempt wall, cap 4", "attempts", ("cap4", "ratio"), "≈ 1× (≤ 1.3)",
     lambda v: v <= 1.3),
    ("attempts: best-of-3 / single attempt wall, cap 2", "attempts", ("cap2", "ratio"), "≈ 2× (≤ 2.3)",
     lambda v: v <= 2.3),
    ("codemod: every sharded run's tree equals the serial run's", "codemod",
     ("pyupgrade_large", "same_tree"), "true", lambda v: v is True),
]  # fmt: skip


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def summary(results: dict[str, Any]) -> list[str]:
    lines = ["## Summary", "", "| figure | target | measured | met |", "|---|---|---|---|"]
    for label, suite, path, target, check in TARGETS:
        if suite in results:
            value = _dig(results[suite], path)
            lines.append(f"| {label} | {target} | {value} | {'yes' if check(value) else '**no**'} |")
    lines.append("")
    return lines


def _machine() -> str:
    git_version = subprocess.run(
        ["git", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {git_version}"
    )


def _rows(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        rows: list[tuple[str, str]] = []
        for key, value in data.items():
            rows += _rows(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
        return rows
    return [(prefix.rstrip("."), json.dumps(data))]


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (`python -m benchmarks`), which rewrites this file (but for the",
        "hand-measured test suite section at its end).",
        "Every comparison is measured side by side in one run and given as a ratio;",
        "absolute times are this machine's, for scale.",
        "",
        f"- measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {_machine()}",
        "",
        *summary(results),
    ]
    for name, data in results.items():
        module = importlib.import_module(SUITES[name])
        lines += [f"## {name}", "", (module.__doc__ or "").strip(), "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in _rows(data)]
        lines.append("")
    return "\n".join(lines)


KEPT = "## Test suite"  # measured by hand (`make test`), carried over when the file is rewritten


def kept(path: Path) -> str:
    """The hand-measured sections at the end of ``path`` (from :data:`KEPT` on), if any."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(f"\n{KEPT}\n")
    return text[start + 1 :] if start >= 0 else ""


def main(argv: list[str]) -> int:
    wanted = argv or list(SUITES)
    results: dict[str, Any] = {}
    for name in wanted:
        print(f"== {name}", flush=True)
        results[name] = importlib.import_module(SUITES[name]).main()
    if not argv:
        out = ROOT / "docs" / "performance.md"
        out.write_text(render(results) + kept(out), encoding="utf-8")
        print("wrote docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

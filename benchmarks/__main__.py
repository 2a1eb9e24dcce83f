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
SUITES = {"merge": "benchmarks.bench_merge", "run": "benchmarks.bench_run", "llm": "benchmarks.bench_llm"}


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
        "Measured by `make bench` (`python -m benchmarks`), which rewrites this file.",
        "Every comparison is measured side by side in one run and given as a ratio;",
        "absolute times are this machine's, for scale.",
        "",
        f"- measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {_machine()}",
        "",
    ]
    for name, data in results.items():
        module = importlib.import_module(SUITES[name])
        lines += [f"## {name}", "", (module.__doc__ or "").strip(), "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in _rows(data)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    wanted = argv or list(SUITES)
    results: dict[str, Any] = {}
    for name in wanted:
        print(f"== {name}", flush=True)
        results[name] = importlib.import_module(SUITES[name]).main()
    if not argv:
        (ROOT / "docs" / "performance.md").write_text(render(results), encoding="utf-8")
        print("wrote docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

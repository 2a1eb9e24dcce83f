"""The offline demo: a sample repo and a scripted five-role swarm. No key, no network.

What it shows: agents running in parallel under a cap; a dependent (tester) starting from the integration tip
once the builder is merged; two agents editing README.md in disjoint hunks (auto-merged); two agents editing
the same line of settings.toml (a recorded conflict, nothing lost); the timeline, speedup and merges.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from ci_swarm import git
from ci_swarm.agents import AGENTS
from ci_swarm.models import Request, RunReport, SubtaskStatus
from ci_swarm.plan import plan_from_dict
from ci_swarm.progress import TerminalProgress
from ci_swarm.report import print_terminal
from ci_swarm.run import RunOptions
from ci_swarm.service import CommandPolicy, RunRequest, ServiceOptions, run_request

SAMPLE_FILES = {
    "README.md": """# acme-greeter

A tiny service that greets people.

## Usage

Run `python -m acme` to print a greeting.

## Configuration

Settings live in `settings.toml`.

## Roadmap

- nothing planned yet
""",
    "settings.toml": """[service]
name = "acme-greeter"
replicas = 1
timeout = 30

[logging]
level = "info"
""",
    "src/acme/__init__.py": '"""acme-greeter."""\n',
    "src/acme/__main__.py": 'print("hello")\n',
    "CHANGELOG.md": "# Changelog\n\n## Unreleased\n",
}

DEMO_PLAN = """
version: 1
task: "Add a greeting module with tests, docs, a roadmap and a deployment"
merge: {order: completion, prefer: first}
subtasks:
  - id: greet
    role: builder
    title: Write greet()
    instructions: Add src/acme/greet.py with greet(name) and use it from __main__.
    paths: ["src/acme/**"]
    agent:
      kind: scripted
      delay: 2.0
      edits:
        - write: src/acme/greet.py
          content: |
            def greet(name: str = "world") -> str:
                return f"Hello, {name}!"
        - write: src/acme/__main__.py
          content: |
            from acme.greet import greet

            print(greet())
  - id: tests
    role: tester
    title: Test greet()
    instructions: Add tests for greet() once it is merged.
    paths: ["tests/**"]
    depends_on: [greet]
    agent:
      kind: scripted
      delay: 1.2
      edits:
        - write: tests/test_greet.py
          content: |
            from acme.greet import greet


            def test_greet() -> None:
                assert greet("Ada") == "Hello, Ada!"
  - id: docs
    role: documenter
    title: Document the greeting
    instructions: Explain greet() in the README's Usage section.
    paths: ["README.md"]
    agent:
      kind: scripted
      delay: 1.5
      edits:
        - replace: README.md
          old: "Run `python -m acme` to print a greeting."
          new: "Run `python -m acme` to print a greeting, or call `acme.greet.greet(name)`."
  - id: research
    role: researcher
    title: Roadmap and capacity
    instructions: Write the roadmap; size the service from the load test.
    paths: ["README.md", "settings.toml"]
    agent:
      kind: scripted
      delay: 1.0
      edits:
        - replace: README.md
          old: "- nothing planned yet"
          new: "- i18n greetings\\n- a /greet HTTP endpoint"
        - replace: settings.toml
          old: "replicas = 1"
          new: "replicas = 2  # load test: 2 replicas hold 400 rps"
  - id: deploy
    role: deployer
    title: Deployment config
    instructions: Add a deployment manifest and scale the service for launch.
    paths: ["deploy/**", "settings.toml"]
    agent:
      kind: scripted
      delay: 1.8
      edits:
        - write: deploy/service.yaml
          content: |
            service: acme-greeter
            port: 8080
        - replace: settings.toml
          old: "replicas = 1"
          new: "replicas = 3  # launch day"
"""


def build_sample_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git.run(path, "init", "--quiet", "--initial-branch=main")
    for name, text in SAMPLE_FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git.commit_all(
        path, "Initial commit of acme-greeter\n", git.Identity("Demo Maintainer", "demo@example.com")
    )
    return path


def demo_plan_data(speed: float = 1.0) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO_PLAN)
    for sub in data["subtasks"]:
        sub["agent"]["delay"] = round(sub["agent"]["delay"] * speed, 3)
    return data


def run_demo(
    directory: Path | None, *, max_agents: int = 3, speed: float = 1.0, console: Console | None = None
) -> RunReport:
    console = console or Console()
    root = Path(directory).resolve() if directory else Path(tempfile.mkdtemp(prefix="ci-swarm-demo-"))
    repo = build_sample_repo(root / "acme-greeter")
    plan = plan_from_dict(demo_plan_data(speed), source="<demo plan>")
    console.rule("[bold]ci-swarm demo")
    console.print(f"sample repo: {repo}")
    console.print(
        f"plan: {len(plan.subtasks)} scripted agents (builder, tester, documenter, researcher, "
        f"deployer), at most {max_agents} at once; the tester waits for the builder's merge\n"
    )
    options = RunOptions(repo=repo, base="main", max_agents=max_agents, workdir=root / "worktrees")
    wiring = ServiceOptions(  # the demo's plan is ours; its scripted agents need no model
        agents=AGENTS,
        commands=CommandPolicy(trust_plan_commands=True),
        watch=lambda chosen: TerminalProgress(console, chosen.subtasks),
    )
    report = run_request(RunRequest(Request(plan.task, source="demo"), options, plan), wiring).report
    console.print()
    print_terminal(report, console)
    _timeline(report, console)
    _explain(report, repo, console)
    return report


def _timeline(report: RunReport, console: Console) -> None:
    timed = [s for s in report.subtasks if s.started_at and s.finished_at]
    if not timed:
        return
    origin = min(s.started_at or 0.0 for s in timed)
    end = max(s.finished_at or 0.0 for s in timed)
    scale = 50 / max(end - origin, 1e-6)
    console.print(f"\n[bold]timeline[/] (each █ ≈ {1 / scale:.2f}s)")
    for s in timed:
        start = int(((s.started_at or origin) - origin) * scale)
        width = max(1, int(((s.finished_at or origin) - (s.started_at or origin)) * scale))
        colour = "green" if s.status is SubtaskStatus.SUCCEEDED else "red"
        console.print(f"  {s.id:>10} {' ' * start}[{colour}]{'█' * width}[/] {s.seconds:.1f}s")


def _explain(report: RunReport, repo: Path, console: Console) -> None:
    shared = [o for o in report.overlap if o.kind.value == "disjoint"]
    for o in shared:
        console.print(f"[green]auto-merged[/] {escape(o.path)}: {o.a} and {o.b} edited disjoint hunks")
    for c in report.conflicts:
        kept, other = escape(repr(c.kept_text.strip())), escape(repr(c.other_text.strip()))
        console.print(
            f"[yellow]recorded conflict[/] {escape(c.path)}:{c.lines[0]}: kept {c.kept_subtask}'s {kept}; "
            f"{c.subtask}'s {other} is kept in the report and on its branch"
        )
    console.print(
        f"\nintegration branch [bold]{report.integration_branch}[/] at {report.integration_commit[:10]}"
    )
    console.print(f"see the merges:  git -C {repo} log --graph --oneline --all")

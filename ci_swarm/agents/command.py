"""The command agent: runs an external coding CLI (``claude -p``, ``aider --message``, ``codex exec``…)
in its workspace, through the sandbox (:mod:`ci_swarm.sandbox`) like every untrusted process.

Options: ``run`` (argv list, or ``command: {run: [...]}``; ``{instructions}``, ``{title}``, ``{id}``,
``{role}``, ``{task}``, ``{paths}``, ``{paths_file}`` substituted in each element, never a shell: an element
that is exactly ``{paths}`` becomes one argument per path, chunked below the OS argv limit with one run
per chunk — :mod:`ci_swarm.agents.pathargs`), ``success`` (exit codes that count as success, or
``changes`` — :mod:`ci_swarm.agents.success`; a failing run's changes are still committed on its branch,
its summary says ``partial`` and its error names the files its output blames), ``timeout`` (seconds,
for all chunks together),
``env`` (extra variables with literal values, none whose name looks like a secret) and ``pass_env`` (names
of variables of ci-swarm's own environment to hand over — a model key for an agent CLI that needs one; each
name must be allowed by ``pass_env`` in the repository config, else the subtask fails).

The process sees only the sandbox's allow-listed environment plus ``PYTHONUNBUFFERED=1`` (live lines in
order), ``env`` and ``pass_env``, runs with the
run's :class:`~ci_swarm.sandbox.SandboxPolicy` (``AgentContext.sandbox``; None: whatever backend is
available), may write only its workspace (handed to the sandbox account for the run and given back after),
and is ended with its whole process tree at its timeout or when cancelled. Its output is captured bounded
into the outcome's log. It never commits: the orchestrator does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ci_swarm import sandbox
from ci_swarm.agents import options as opt
from ci_swarm.agents import pathargs, success
from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.sandbox import ProcessResult, ProcessSpec
from ci_swarm.workspace import Workspace

LOG_HEAD = sandbox.OUTPUT_LIMIT // 8  # bytes of output kept from the start …
LOG_TAIL = sandbox.OUTPUT_LIMIT - LOG_HEAD  # … and from the end
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# `env:` values are literal text in the plan: a name like these means a secret is being written into it.
SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE_KEY|CREDENTIAL|AUTH|SESSION|COOKIE)",
    re.IGNORECASE,
)
LIVE_OUTPUT = {"PYTHONUNBUFFERED": "1"}  # Python agents: lines arrive as written (live logs, last line)
OPTIONS = frozenset({"run", "command", "timeout", "env", "pass_env", "success"})
SHOWN_ARGV = 400  # characters of a long command shown in the live log


def check_options(options: Mapping[str, Any], where: str) -> None:
    """plan.OptionsValidator for ``kind: command``."""
    opt.known_options(options, "command", OPTIONS, where)
    command_argv(options, where)
    opt.seconds(options, "timeout", where)
    success.parse(options.get("success"), where)
    command_env(options, where)
    pass_env_names(options, where)


def command_argv(options: Mapping[str, Any], where: str = "<agent>") -> tuple[str, ...]:
    """The command agent's argv (``run:`` or ``command: {run: ...}``): a non-empty list of strings."""
    run = options.get("run")
    nested = options.get("command")
    if run is None and isinstance(nested, Mapping):
        run = nested.get("run")
    if not isinstance(run, Sequence) or isinstance(run, str) or not run:
        raise PlanError(f"{where}: command agent needs 'run': a non-empty list of arguments (no shell)")
    if not all(isinstance(a, str) for a in run):
        raise PlanError(f"{where}: command agent 'run' must contain only strings")
    return tuple(run)


def command_env(options: Mapping[str, Any], where: str = "<agent>") -> dict[str, str]:
    """Extra environment for the command agent; names that look like secrets are refused."""
    env = options.get("env") or {}
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        raise PlanError(f"{where}: command agent 'env' must map names to strings")
    env = {str(k): v for k, v in env.items()}
    bad = sorted(name for name in env if not _ENV_NAME.match(name))
    if bad:
        raise PlanError(f"{where}: command agent 'env' has an invalid variable name: {bad[0]!r}")
    secret = sorted(name for name in env if SECRET_NAME.search(name) or name.startswith("GIT_CONFIG_"))
    if secret:
        raise PlanError(f"{where}: command agent 'env' may not pass secrets to an agent: {secret[0]}")
    return env


def pass_env_names(options: Mapping[str, Any], where: str = "<agent>") -> tuple[str, ...]:
    """The names of ``pass_env``: variables of ci-swarm's environment the agent receives."""
    names = options.get("pass_env") or ()
    if (
        isinstance(names, str)
        or not isinstance(names, Sequence)
        or not all(isinstance(n, str) for n in names)
    ):
        raise PlanError(f"{where}: command agent 'pass_env' must be a list of variable names")
    bad = [name for name in names if not _ENV_NAME.match(name)]
    if bad:
        raise PlanError(f"{where}: command agent 'pass_env' has an invalid variable name: {bad[0]!r}")
    return tuple(names)


def passed_env(
    names: Sequence[str], allowed: Sequence[str], environ: Mapping[str, str], where: str
) -> dict[str, str]:
    """The values of ``pass_env`` from ``environ``; UsageError for a name the config does not allow or
    that is not set."""
    for name in names:
        if name not in allowed:
            raise UsageError(
                f"{where}: pass_env {name} is not allowed (list it under pass_env in the repository config)"
            )
        if name not in environ:
            raise UsageError(f"{where}: pass_env {name} is not set in ci-swarm's environment")
    return {name: environ[name] for name in names}


def placeholders(subtask: Subtask, ctx: AgentContext) -> dict[str, str]:
    return {
        "instructions": subtask.instructions or subtask.title,
        "title": subtask.title,
        "id": subtask.id,
        "role": subtask.role,
        "task": ctx.task,
    }


def argvs(
    template: Sequence[str], values: Mapping[str, str], paths: Sequence[str], listing: Path | None
) -> tuple[tuple[str, ...], ...]:
    """One argv per run: the paths in chunks below the argv bound when ``{paths}`` is used (else one run
    with every path); with ``{paths_file}``, each run's paths are written to a file in ``listing``."""

    def render(chunk: Sequence[str], n: int = 0) -> tuple[str, ...]:
        name = str(listing / f"paths-{n}.txt") if listing is not None else ""
        return pathargs.expand(template, values, chunk, name)

    parts = (
        pathargs.chunks(paths, render, pathargs.argv_bound())
        if pathargs.uses_paths(template)
        else (tuple(paths),)
    )
    if listing is not None:
        for n, chunk in enumerate(parts, 1):
            target = listing / f"paths-{n}.txt"
            target.write_text("".join(f"{p}\n" for p in chunk), encoding="utf-8")
            target.chmod(0o644)
    return tuple(render(chunk, n) for n, chunk in enumerate(parts, 1))


@contextlib.contextmanager
def listing_dir(template: Sequence[str]) -> Iterator[Path | None]:
    """A directory any sandbox account can read (0755, outside the tree) for ``{paths_file}`` lists,
    removed afterwards; None when the argv does not use them."""
    if not pathargs.uses_paths_file(template):
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="ci-swarm-paths-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def shown(argv: Sequence[str], limit: int = SHOWN_ARGV) -> str:
    """A command for a log line: cut at ``limit`` characters, counting the arguments left out."""
    text = " ".join(argv)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return f"{cut} … (+{len(argv) - len(cut.split(' '))} arguments)"


def program_problem(program: str, cwd: Path, path: str) -> str | None:
    """Why ``program`` cannot be started (looked up the way the sandbox will: on ``path``, or relative to
    ``cwd`` when it names a directory), or None."""
    if "/" in program:
        target = cwd / program
        if not target.is_file():
            return f"executable {program!r} not found"
        return None if os.access(target, os.X_OK) else f"{program!r} is not executable"
    if shutil.which(program, path=path) is None:
        return f"executable {program!r} not found"
    return None


class CommandAgent:
    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome:
        where = f"subtask {subtask.id!r}"
        try:
            rule = success.parse(self.spec.options.get("success"), where)
            spec = self.process(subtask, workspace, ctx)
            policy = ctx.sandbox or sandbox.resolve_policy(None)
        except UsageError as exc:  # PlanError included
            return AgentOutcome(ok=False, error=str(exc))
        problem = program_problem(spec.argv[0], workspace.root, spec.env.get("PATH", sandbox.SANE_PATH))
        if problem:
            return AgentOutcome(ok=False, error=problem, command=spec.argv)
        template = command_argv(self.spec.options, where)
        with listing_dir(template) as listing:
            runs = argvs(template, placeholders(subtask, ctx), subtask.paths, listing)
            results = await self._run_all(subtask, spec, runs, policy, ctx)
        return combined(runs, results, rule, spec.timeout, subtask.paths)

    async def _run_all(
        self,
        subtask: Subtask,
        spec: ProcessSpec,
        runs: Sequence[tuple[str, ...]],
        policy: sandbox.SandboxPolicy,
        ctx: AgentContext,
    ) -> list[ProcessResult]:
        """Each run in turn (the same process but its argv), the timeout shared by all; stops after one
        that did not exit by itself."""
        results: list[ProcessResult] = []
        began = time.monotonic()
        for n, argv in enumerate(runs, 1):
            timeout = None if spec.timeout is None else max(spec.timeout - (time.monotonic() - began), 0.01)
            part = f" (paths chunk {n}/{len(runs)})" if len(runs) > 1 else ""
            ctx.log(f"{subtask.id}: $ {shown(argv)}{part}")
            one = replace(spec, argv=argv, timeout=timeout)
            result = await sandbox.run(one, policy, on_line=lambda line: ctx.log(f"{subtask.id}: {line}"))
            results.append(result)
            if result.returncode is None or result.timed_out or result.cancelled:
                break
        return results

    def process(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> ProcessSpec:
        """The sandboxed process of this agent for ``subtask`` (its argv with every path, joined where
        ``{paths}`` is part of an argument): PlanError / UsageError when its options or ``pass_env`` do not
        allow it."""
        options, where = self.spec.options, f"subtask {subtask.id!r}"
        argv = pathargs.expand(command_argv(options, where), placeholders(subtask, ctx), subtask.paths)
        passed = passed_env(pass_env_names(options, where), ctx.pass_env, os.environ, where)
        timeout = options.get("timeout")
        return ProcessSpec(
            argv=argv,
            cwd=workspace.root,
            env={**LIVE_OUTPUT, **command_env(options, where), **passed},
            timeout=float(timeout) if timeout else None,
            output_limit=LOG_HEAD + LOG_TAIL,
            writable_dirs=(workspace.root,),
        )


def combined(
    runs: Sequence[tuple[str, ...]],
    results: Sequence[ProcessResult],
    rule: success.Success,
    timeout: float | None,
    paths: Sequence[str],
) -> AgentOutcome:
    """One outcome for the runs of all chunks: a success when each is one under ``rule``; the command and
    exit status of the first that failed (else of the last); outputs concatenated, bounded."""
    program = runs[0][0]
    failed = next(
        ((argv, r) for argv, r in zip(runs, results, strict=False) if not success.judge(rule, r)), None
    )
    argv, last = failed or (runs[len(results) - 1], results[-1])
    log = _joined_output(results, len(runs))
    done = outcome(program, last, timeout, rule)
    if failed is None:
        chunks = f" ({len(runs)} runs over chunks of the paths)" if len(runs) > 1 else ""
        done = replace(done, summary=f"{program} exited {last.returncode}{chunks}")
    else:
        named = success.failed_files(log, paths)
        rule_note = f" (success: {success.describe(rule)})" if rule != success.EXIT_ZERO else ""
        blamed = f"; files its output names: {', '.join(named)}" if named else ""
        partial = "partial: what it changed is committed on its branch, not merged"
        done = replace(done, error=f"{done.error}{rule_note}{blamed}", summary=f"{partial}{blamed}")
    return replace(done, log=log, command=argv, exit_status=last.returncode)


def _joined_output(results: Sequence[ProcessResult], runs: int) -> str:
    if len(results) == 1 and runs == 1:
        return results[0].output
    capture = sandbox.Capture(LOG_HEAD + LOG_TAIL)
    for n, result in enumerate(results, 1):
        capture.add(f"[paths chunk {n}/{runs}: exit {result.returncode}]\n".encode())
        capture.add(result.output.encode("utf-8", "replace"))
        if result.output and not result.output.endswith("\n"):
            capture.add(b"\n")
    return capture.text()


def outcome(
    program: str,
    result: ProcessResult,
    timeout: float | None = None,
    rule: success.Success = success.EXIT_ZERO,
) -> AgentOutcome:
    """ok when ``rule`` says so (exit 0 by default); else an error naming the exit status (or signal, or
    timeout) and the last line."""
    if success.judge(rule, result):
        return AgentOutcome(ok=True, summary=f"{program} exited {result.returncode}", log=result.output)
    if result.timed_out:
        limit = f"{timeout:g}s" if timeout else f"{result.duration:.0f}s"
        error = f"timed out after {limit}: killed {program!r} and every process it started"
    elif result.cancelled:
        error = f"{program} was stopped"
    elif result.returncode is None:
        error = f"{program} killed by signal {result.signal}"
    else:
        last = last_line(result.output)
        error = f"exited {result.returncode}: {last}" if last else f"exited {result.returncode}"
    return AgentOutcome(ok=False, error=error, log=result.output)


def last_line(text: str, limit: int = 200) -> str:
    """The last non-blank line of ``text``, cut at ``limit`` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[: limit - 1] + "…"

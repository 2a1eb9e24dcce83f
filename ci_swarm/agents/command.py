"""The command agent: runs an external coding CLI (``claude -p``, ``aider --message``, ``codex exec``…)
in its workspace, through the sandbox (:mod:`ci_swarm.sandbox`) like every untrusted process.

Options: ``run`` (argv list, or ``command: {run: [...]}``; ``{instructions}``, ``{title}``, ``{id}``,
``{role}``, ``{task}``, ``{paths}`` substituted in each element; never a shell), ``timeout`` (seconds),
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

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ci_swarm import sandbox
from ci_swarm.agents import options as opt
from ci_swarm.errors import PlanError, UsageError
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.sandbox import ProcessResult, ProcessSpec
from ci_swarm.workspace import Workspace

LOG_HEAD = sandbox.OUTPUT_LIMIT // 8  # bytes of output kept from the start …
LOG_TAIL = sandbox.OUTPUT_LIMIT - LOG_HEAD  # … and from the end
_PLACEHOLDER = re.compile(r"\{(instructions|title|id|role|task|paths)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# `env:` values are literal text in the plan: a name like these means a secret is being written into it.
SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE_KEY|CREDENTIAL|AUTH|SESSION|COOKIE)",
    re.IGNORECASE,
)
LIVE_OUTPUT = {"PYTHONUNBUFFERED": "1"}  # Python agents: lines arrive as written (live logs, last line)
OPTIONS = frozenset({"run", "command", "timeout", "env", "pass_env"})


def check_options(options: Mapping[str, Any], where: str) -> None:
    """plan.OptionsValidator for ``kind: command``."""
    opt.known_options(options, "command", OPTIONS, where)
    command_argv(options, where)
    opt.seconds(options, "timeout", where)
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


def substitute(argv: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Replace the placeholders in each argument in one pass (substituted text is not re-expanded)."""
    return tuple(_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in argv)


def placeholders(subtask: Subtask, ctx: AgentContext) -> dict[str, str]:
    return {
        "instructions": subtask.instructions or subtask.title,
        "title": subtask.title,
        "id": subtask.id,
        "role": subtask.role,
        "task": ctx.task,
        "paths": " ".join(subtask.paths),
    }


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
        try:
            spec = self.process(subtask, workspace, ctx)
            policy = ctx.sandbox or sandbox.resolve_policy(None)
        except UsageError as exc:  # PlanError included
            return AgentOutcome(ok=False, error=str(exc))
        problem = program_problem(spec.argv[0], workspace.root, spec.env.get("PATH", sandbox.SANE_PATH))
        if problem:
            return AgentOutcome(ok=False, error=problem, command=spec.argv)
        ctx.log(f"{subtask.id}: $ {' '.join(spec.argv)}")
        result = await sandbox.run(spec, policy, on_line=lambda line: ctx.log(f"{subtask.id}: {line}"))
        # the report shows the command and its exit status (None: a signal, a timeout, a stop)
        done = outcome(spec.argv[0], result, spec.timeout)
        return replace(done, command=spec.argv, exit_status=result.returncode)

    def process(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> ProcessSpec:
        """The sandboxed process of this agent for ``subtask``: PlanError / UsageError when its options or
        ``pass_env`` do not allow it."""
        options, where = self.spec.options, f"subtask {subtask.id!r}"
        argv = substitute(command_argv(options, where), placeholders(subtask, ctx))
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


def outcome(program: str, result: ProcessResult, timeout: float | None = None) -> AgentOutcome:
    """ok on exit 0; else an error naming the exit status (or signal, or timeout) and the last line."""
    if result.ok:
        return AgentOutcome(ok=True, summary=f"{program} exited 0", log=result.output)
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

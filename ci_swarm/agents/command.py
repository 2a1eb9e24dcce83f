"""The command agent: runs an external coding CLI (``claude -p``, ``aider --message``, ``codex exec``…)
in the worktree.

Options: ``run`` (argv list, or ``command: {run: [...]}``; ``{instructions}``, ``{title}``, ``{id}``,
``{role}``, ``{task}``, ``{paths}`` substituted in each element; never a shell), ``timeout`` (seconds),
``env`` (extra variables, none that look like secrets). The child gets the environment scrubbed of
credentials, its own process group (killed whole on timeout or cancellation), no stdin, and its
stdout+stderr captured (bounded) into the outcome's log. It never commits: the orchestrator does.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ci_swarm.agents import options as opt
from ci_swarm.errors import PlanError
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.workspace import Workspace, scrub_env

LOG_HEAD = 8_000  # characters of output kept from the start …
LOG_TAIL = 56_000  # … and from the end
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL
DRAIN_WAIT = 2.0  # seconds to collect output after the process exited
_PLACEHOLDER = re.compile(r"\{(instructions|title|id|role|task|paths)\}")
OPTIONS = frozenset({"run", "command", "timeout", "env"})


def check_options(options: Mapping[str, Any], where: str) -> None:
    """plan.OptionsValidator for ``kind: command``."""
    opt.known_options(options, "command", OPTIONS, where)
    command_argv(options, where)
    opt.seconds(options, "timeout", where)
    command_env(options, where)


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
    secret = sorted(set(env) - set(scrub_env(env)))
    if secret:
        raise PlanError(f"{where}: command agent 'env' may not pass secrets to an agent: {secret[0]}")
    return env


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


class CommandAgent:
    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome:
        options = self.spec.options
        try:
            argv = substitute(command_argv(options, f"subtask {subtask.id!r}"), placeholders(subtask, ctx))
            env = {**scrub_env(os.environ), **command_env(options, f"subtask {subtask.id!r}")}
        except PlanError as exc:
            return AgentOutcome(ok=False, error=str(exc))
        timeout = options.get("timeout")
        ctx.log(f"{subtask.id}: $ {' '.join(argv)}")
        seconds = float(timeout) if timeout else None
        return await _execute(argv, workspace, env, seconds, lambda line: ctx.log(f"{subtask.id}: {line}"))


async def _execute(
    argv: tuple[str, ...],
    workspace: Workspace,
    env: Mapping[str, str],
    timeout: float | None,
    log: Callable[[str], None],
) -> AgentOutcome:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workspace.root,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        return AgentOutcome(ok=False, error=f"executable {argv[0]!r} not found")
    except PermissionError:
        return AgentOutcome(ok=False, error=f"{argv[0]!r} is not executable")
    except OSError as exc:
        return AgentOutcome(ok=False, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    capture = Capture()
    assert proc.stdout is not None
    reader = asyncio.create_task(_pump(proc.stdout, capture, log))
    try:
        async with asyncio.timeout(timeout):
            code = await proc.wait()
    except TimeoutError:
        await _kill_group(proc)
        await _drain(reader)
        error = f"timed out after {timeout:g}s: killed {argv[0]!r} and its process group"
        return AgentOutcome(ok=False, error=error, log=capture.text())
    except asyncio.CancelledError:
        await _kill_group(proc)
        reader.cancel()
        raise
    _signal_group(proc.pid, signal.SIGKILL)  # nothing the agent started outlives it
    await _drain(reader)
    return _outcome(argv[0], code, capture)


def _outcome(program: str, code: int, capture: Capture) -> AgentOutcome:
    text = capture.text()
    if code == 0:
        return AgentOutcome(ok=True, summary=f"{program} exited 0", log=text)
    last = capture.last_line()
    if code < 0:
        error = f"{program} killed by signal {-code}"
    else:
        error = f"exited {code}: {last}" if last else f"exited {code}"
    return AgentOutcome(ok=False, error=error, log=text)


async def _pump(stream: asyncio.StreamReader, capture: Capture, log: Callable[[str], None]) -> None:
    partial = ""
    while chunk := await stream.read(4096):
        text = capture.add(chunk)
        *lines, partial = (partial + text).split("\n")
        for line in lines:
            log(line)
    if partial:
        log(partial)


async def _drain(reader: asyncio.Task[None]) -> None:
    """Collect what is left of the output; give up if a stray process keeps the pipe open."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader, DRAIN_WAIT)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period, and reap the child."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Capture:
    """Bounded output: the first LOG_HEAD and last LOG_TAIL characters, with a marker between."""

    def __init__(self, head: int = LOG_HEAD, tail: int = LOG_TAIL) -> None:
        self._limit_head, self._limit_tail = head, tail
        self._head = ""
        self._tail = ""
        self._dropped = 0
        self._decoder = _decoder()

    def add(self, data: bytes) -> str:
        text: str = self._decoder.decode(data)
        room = self._limit_head - len(self._head)
        self._head += text[:room]
        self._tail += text[room:] if room > 0 else text
        if len(self._tail) > self._limit_tail:
            self._dropped += len(self._tail) - self._limit_tail
            self._tail = self._tail[-self._limit_tail :]
        return text

    def text(self) -> str:
        if not self._dropped:
            return self._head + self._tail
        return f"{self._head}\n… [{self._dropped} characters of output dropped] …\n{self._tail}"

    def last_line(self, limit: int = 200) -> str:
        lines = [line.strip() for line in (self._head + self._tail).splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        return last if len(last) <= limit else last[: limit - 1] + "…"


def _decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")

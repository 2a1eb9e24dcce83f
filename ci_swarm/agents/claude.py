"""The Claude agent: a tool-use loop in the subtask's worktree (``agent.kind: claude``).

Each turn sends the conversation (shared cached system prefix, role block, brief, tool results so far) and
runs the tools the model asks for. It ends when the model calls ``finish``, or with a failed outcome: max
turns, the subtask's token cap, a refusal, the API failing for good. When the swarm budget is used up, no
new turn starts and the outcome says ``budget_stopped``. Stop reasons ``max_tokens`` (a cut reply: cut tool
calls are answered with an error, the model is asked to go on in smaller steps) and ``pause_turn`` (the
reply is sent back as is to continue) are handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ci_swarm.agents import options as opt
from ci_swarm.agents.tools import ToolBox, ToolResult
from ci_swarm.errors import LLMError
from ci_swarm.llm import prompts
from ci_swarm.llm.accounting import BudgetStop
from ci_swarm.llm.wire import content_params, prefix_key
from ci_swarm.models import AgentOutcome, AgentSpec, Subtask
from ci_swarm.ports import AgentContext
from ci_swarm.workspace import Workspace

if TYPE_CHECKING:
    from anthropic.types import Message

    from ci_swarm.llm.session import LLMSession

_CACHE = {"type": "ephemeral"}
NUDGE = "Continue with the tools; when the subtask is done, call finish with a short summary."
CUT = "Your reply was cut off at max_tokens. Continue in smaller steps (e.g. several edit_file calls)."
CUT_TOOL = "Not run: your reply was cut off at max_tokens inside this call. Send it again in smaller parts."
OPTIONS = frozenset({"model", "max_turns"})


def check_options(options: Mapping[str, Any], where: str) -> None:
    """plan.OptionsValidator for ``kind: claude`` (no SDK needed)."""
    opt.known_options(options, "claude", OPTIONS, where)
    opt.text(options, "model", where)
    opt.positive_int(options, "max_turns", where)


class ClaudeAgent:
    """ports.Agent. ``spec.options`` may set ``model`` and ``max_turns`` for this agent."""

    def __init__(self, session: LLMSession, spec: AgentSpec | None = None) -> None:
        self._session = session
        options = spec.options if spec is not None else {}
        settings = session.settings
        self.model = str(options.get("model") or settings.model)
        self.max_turns = int(options.get("max_turns") or settings.max_turns)

    async def run(self, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> AgentOutcome:
        return await _Loop(self, subtask, workspace, ctx).run()


class _Loop:
    def __init__(self, agent: ClaudeAgent, subtask: Subtask, workspace: Workspace, ctx: AgentContext) -> None:
        self.agent = agent
        self.session = agent._session
        self.subtask = subtask
        self.ctx = ctx
        settings = self.session.settings
        self.box = ToolBox(
            workspace,
            allowed_commands=settings.allowed_commands,
            command_timeout=settings.command_timeout,
            strict_paths=settings.strict_paths,
            sandbox=ctx.sandbox,
            checks=ctx.checks,
        )
        context = prompts.repo_context(
            workspace.root, workspace.start_commit, map_chars=settings.repo_map_chars
        )
        shared = prompts.agent_shared(context)
        self.system = [
            {"type": "text", "text": shared, "cache_control": _CACHE},
            {"type": "text", "text": prompts.role_prompt(subtask.role, settings.role_prompts)},
        ]
        self.prefix = prefix_key(self.agent.model, self.box.schemas, shared)
        brief = prompts.agent_brief(
            subtask,
            ctx.task,
            allowed_commands=settings.allowed_commands,
            strict_paths=settings.strict_paths,
            checks=tuple(c.name for c in ctx.checks),
        )
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": brief}]}]
        self.lines: list[str] = []

    async def run(self) -> AgentOutcome:
        for turn in range(1, self.agent.max_turns + 1):
            stop = self._stop_reason()
            if stop is not None:
                return stop
            try:
                reply = await self.session.create(self.subtask.id, self._params(), prefix=self.prefix)
            except BudgetStop as exc:
                return self._budget_stop(str(exc))
            except LLMError as exc:
                return self._outcome(False, error=str(exc))
            self.messages.append({"role": "assistant", "content": content_params(reply)})
            ended = await self._handle(turn, reply)
            if ended is not None:
                return ended
        return self._outcome(False, error=f"max turns ({self.agent.max_turns}) reached without finish")

    def _stop_reason(self) -> AgentOutcome | None:
        reason = self.session.budget_reason()
        if reason is not None:
            return self._budget_stop(reason)
        cap = self.session.settings.max_tokens_per_subtask
        used = self.session.ledger.usage(self.subtask.id).tokens
        if cap is not None and used >= cap:
            return self._outcome(False, error=f"token limit per subtask reached ({used} of {cap})")
        return None

    def _budget_stop(self, reason: str) -> AgentOutcome:
        self.session.budget_stopped = True
        self._log(f"stopped: {reason}")
        return self._outcome(False, error=f"stopped by the swarm budget ({reason})", budget_stopped=True)

    def _params(self) -> dict[str, Any]:
        return {
            "model": self.agent.model,
            "max_tokens": self.session.settings.response_max_tokens,
            "system": self.system,
            "tools": list(self.box.schemas),
            "messages": with_cache_marker(self.messages),
        }

    async def _handle(self, turn: int, reply: Message) -> AgentOutcome | None:
        """Act on one reply; an outcome when the loop ends here."""
        reason = reply.stop_reason
        if reason == "refusal":
            return self._outcome(False, error="the model refused the subtask")
        if reason == "model_context_window_exceeded":
            return self._outcome(False, error="the conversation exceeded the model's context window")
        if reason == "pause_turn":
            self._log(f"turn {turn}: paused, continuing")
            return None  # the reply goes back as is; the model continues it
        uses = [b for b in reply.content if b.type == "tool_use"]
        if not uses:
            self._log(f"turn {turn}: no tool call ({reason})")
            self.messages.append(
                {
                    "role": "user",
                    "content": [{"type": "text", "text": CUT if reason == "max_tokens" else NUDGE}],
                }
            )
            return None
        results: list[dict[str, Any]] = []
        summary: str | None = None
        for i, use in enumerate(uses):
            if reason == "max_tokens" and i == len(uses) - 1:
                result = ToolResult(CUT_TOOL, is_error=True)
            else:
                result = await self.box.run(use.name, use.input)
            failed = f" → error: {result.content}" if result.is_error else ""
            self._log(f"turn {turn}: {use.name} {_short(use.input)}{failed}")
            if result.finished:
                summary = result.content
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": result.content or "(empty)",
                    "is_error": result.is_error,
                }
            )
        if summary is not None:
            return self._outcome(True, summary=summary)
        self.messages.append({"role": "user", "content": results})
        return None

    def _outcome(
        self, ok: bool, *, summary: str = "", error: str = "", budget_stopped: bool = False
    ) -> AgentOutcome:
        return AgentOutcome(
            ok=ok,
            summary=summary,
            error=error,
            log="\n".join(self.lines),
            usage=self.session.ledger.usage(self.subtask.id),
            outside_paths=tuple(self.box.outside),
            budget_stopped=budget_stopped,
        )

    def _log(self, line: str) -> None:
        self.lines.append(line)
        self.ctx.log(f"[{self.subtask.id}] {line}")


def with_cache_marker(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy with ``cache_control`` on the last block of the last user message, so each turn reads the
    previous turns from the cache (the system prefix has its own marker: 2 of the 4 allowed)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return list(messages)
    out = list(messages)
    blocks = [dict(b) for b in out[last_user]["content"]]
    blocks[-1]["cache_control"] = _CACHE
    out[last_user] = {**out[last_user], "content": blocks}
    return out


def _short(args: Any, limit: int = 80) -> str:
    if not isinstance(args, Mapping):
        return repr(args)[:limit]
    shown = {k: (v if not isinstance(v, str) or len(v) <= 40 else v[:37] + "...") for k, v in args.items()}
    text = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."

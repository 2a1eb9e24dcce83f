"""The Claude planner: one forced tool, ``submit_plan``, validated by the same code as plan files.

An invalid plan goes back to the model as an ``is_error`` tool_result carrying the validation message, up to
``MAX_REPAIRS`` times; a reply without the tool call gets a reminder (also a repair). Then a clear LLMError.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_swarm.errors import LLMError, PlanError
from ci_swarm.llm import prompts
from ci_swarm.llm.accounting import PLANNER_KEY
from ci_swarm.llm.wire import content_params
from ci_swarm.models import Plan, Request
from ci_swarm.plan import plan_from_dict, validate

if TYPE_CHECKING:
    from anthropic.types import Message

    from ci_swarm.llm.session import LLMSession

MAX_REPAIRS = 2
SINGLE_SUBTASK_NOTE = "The planner returned a single subtask: the work is too small to be worth splitting."
_SUBTASK_FIELDS = ("id", "role", "title", "instructions", "paths", "depends_on")
_STR = {"type": "string"}
_LIST = {"type": "array", "items": _STR}

SUBMIT_PLAN: dict[str, Any] = {
    "name": "submit_plan",
    "description": "Submit the plan: why this split, and the subtasks.",
    "input_schema": {
        "type": "object",
        "properties": {
            "rationale": _STR,
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": _STR,
                        "role": _STR,
                        "title": _STR,
                        "instructions": _STR,
                        "paths": _LIST,
                        "depends_on": _LIST,
                    },
                    "required": ["id", "role", "title", "instructions"],
                },
            },
        },
        "required": ["rationale", "subtasks"],
    },
}


class ClaudePlanner:
    """ports.Planner backed by the session's model."""

    def __init__(self, session: LLMSession) -> None:
        self._session = session
        self.warnings: tuple[str, ...] = ()  # ownership-overlap warnings of the accepted plan
        self.repairs = 0

    async def plan(self, request: Request, repo: Path) -> Plan:
        settings = self._session.settings
        context = prompts.repo_context(repo, map_chars=settings.repo_map_chars)
        brief = prompts.planner_brief(request, context, settings.max_subtasks)
        messages: list[dict[str, Any]] = [{"role": "user", "content": brief}]
        problem = ""
        for attempt in range(MAX_REPAIRS + 1):
            self.repairs = attempt
            reply = await self._session.create(PLANNER_KEY, self._params(messages))
            messages.append({"role": "assistant", "content": content_params(reply)})
            plan, problem, answer = self._judge(reply, request)
            if plan is not None:
                return plan
            messages.append({"role": "user", "content": answer})
        raise LLMError(f"the planner gave no valid plan after {MAX_REPAIRS} repairs: {problem}")

    def _params(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        settings = self._session.settings
        return {
            "model": settings.effective_planner_model,
            "max_tokens": settings.response_max_tokens,
            "system": prompts.PLANNER_SYSTEM.replace("{max_subtasks}", str(settings.max_subtasks)),
            "tools": [SUBMIT_PLAN],
            "tool_choice": {"type": "tool", "name": "submit_plan"},
            "messages": messages,
        }

    def _judge(self, reply: Message, request: Request) -> tuple[Plan | None, str, list[dict[str, Any]]]:
        """(the plan, or None with the problem and the user content that answers the reply)."""
        uses = [b for b in reply.content if b.type == "tool_use"]
        submit = next((u for u in uses if u.name == "submit_plan"), None)
        answers = [
            _result(u.id, f"unknown tool {u.name!r}: call submit_plan", error=True)
            for u in uses
            if u is not submit
        ]
        if submit is None:
            problem = "the model did not call submit_plan"
            text = "You must call the submit_plan tool with the plan (rationale and subtasks)."
            return None, problem, [*answers, {"type": "text", "text": text}]
        try:
            plan = self._build(submit.input, request)
        except PlanError as exc:
            problem = str(exc)
            fix = f"Invalid plan: {problem}. Fix it and call submit_plan again."
            return None, problem, [_result(submit.id, fix, error=True), *answers]
        return plan, "", []

    def _build(self, data: object, request: Request) -> Plan:
        if not isinstance(data, Mapping):
            raise PlanError("submit_plan input must be an object with 'rationale' and 'subtasks'")
        subtasks = data.get("subtasks")
        if not isinstance(subtasks, list):
            raise PlanError("'subtasks' must be a list of subtasks")
        rationale = data.get("rationale")
        if not isinstance(rationale, str):
            raise PlanError("'rationale' must be a string")
        plan_dict = {
            "version": 1,
            "task": request.task,
            "rationale": rationale.strip(),
            # only the contract's fields: the model never chooses an agent backend or its options
            "subtasks": [
                {k: s[k] for k in _SUBTASK_FIELDS if k in s} if isinstance(s, Mapping) else s
                for s in subtasks
            ],
        }
        plan = plan_from_dict(plan_dict, source="submit_plan")
        self.warnings = validate(plan, max_subtasks=self._session.settings.max_subtasks)
        if len(plan.subtasks) == 1:
            note = f"{plan.rationale}\n\n{SINGLE_SUBTASK_NOTE}" if plan.rationale else SINGLE_SUBTASK_NOTE
            plan = Plan(plan.task, plan.subtasks, plan.merge, plan.version, note)
        return plan


def _result(tool_use_id: str, text: str, *, error: bool) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": text, "is_error": error}

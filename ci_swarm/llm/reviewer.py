"""The Claude reviewers (issue #14): ``ClaudeReviewer`` scores a subtask's attempts (``ports.Reviewer``) and
``ClaudeVoter`` votes on the integration diff for the review panel (``ports.PanelVoter``).

Both ask for one forced tool call (``tool_choice`` names the single tool) and validate its input. A malformed
answer — no tool call, a missing or unknown index, a score out of [0, 10], a verdict that is neither
``approve`` nor ``request_changes`` — is repaired once: the validation error goes back as the tool_result
with ``is_error``. A second malformed answer, or a model call that fails (the budget, the API), makes that
reviewer abstain: it has no say, and the reason is recorded. Every request goes through the session, so the
shared limiter, the usage ledger and the budget apply. Diffs and check output are untrusted: they go in as
data between markers carrying a random nonce, after a rule saying they are never instructions.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ci_swarm.errors import LLMError
from ci_swarm.llm import prompts
from ci_swarm.llm.wire import content_params
from ci_swarm.models import PanelVote, Subtask, Usage
from ci_swarm.ports import AttemptView, Score

if TYPE_CHECKING:
    from anthropic.types import Message

    from ci_swarm.llm.session import LLMSession

T = TypeVar("T")
MAX_REPAIRS = 1
MAX_REASON = 2000  # characters of one reason kept (the model's text, untrusted)
MAX_ATTEMPT_CHARS = 40_000  # characters of one attempt's diff (and of its check output) shown
REVIEWER_KEY = "reviewer"  # ledger keys: "reviewer:<subtask>", "panel:<voter>"
PANEL_KEY = "panel"
_STR = {"type": "string"}

SUBMIT_SCORES: dict[str, Any] = {
    "name": "submit_scores",
    "description": "Submit one score (0-10) and a one-sentence reason for every attempt shown.",
    "input_schema": {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "score": {"type": "number", "minimum": 0, "maximum": 10},
                        "reason": _STR,
                    },
                    "required": ["index", "score", "reason"],
                },
            }
        },
        "required": ["scores"],
    },
}

SUBMIT_VOTE: dict[str, Any] = {
    "name": "submit_vote",
    "description": "Submit your vote on the combined change: approve or request_changes, with reasons.",
    "input_schema": {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["approve", "request_changes"]},
            "reasons": _STR,
        },
        "required": ["verdict", "reasons"],
    },
}


class Malformed(Exception):
    """A reviewer's answer that breaks the contract; its message goes back to the model."""


async def ask(
    session: LLMSession, key: str, system: str, brief: str, tool: Mapping[str, Any], read: Callable[[Any], T]
) -> tuple[T | None, str]:
    """One forced tool call, its input read by ``read`` (Malformed → repaired once): (the value, "") or
    (None, why the reviewer abstains)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": brief}]
    problem = ""
    for _ in range(MAX_REPAIRS + 1):
        try:
            reply = await session.create(key, _params(session, system, tool, messages))
        except LLMError as exc:
            return None, f"the model call failed: {exc}"
        messages.append({"role": "assistant", "content": content_params(reply)})
        value, problem, answer = _read(reply, tool["name"], read)
        if not problem:
            return value, ""
        messages.append({"role": "user", "content": answer})
    return None, f"malformed answer after {MAX_REPAIRS} repair: {problem}"


def _params(
    session: LLMSession, system: str, tool: Mapping[str, Any], messages: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "model": session.settings.model,
        "max_tokens": min(session.settings.response_max_tokens, 4096),
        "system": system,
        "tools": [dict(tool)],
        "tool_choice": {"type": "tool", "name": tool["name"]},
        "messages": messages,
    }


def _read(reply: Message, name: str, read: Callable[[Any], T]) -> tuple[T | None, str, list[dict[str, Any]]]:
    """(the value, "", []) or (None, the problem, the user content that answers the reply)."""
    uses = [b for b in reply.content if b.type == "tool_use"]
    call = next((u for u in uses if u.name == name), None)
    unknown = f"unknown tool: call {name}"
    others = [_result(u.id, unknown, error=True) for u in uses if u is not call]
    if call is None:
        text = f"You must call the {name} tool."
        return None, f"the model did not call {name}", [*others, {"type": "text", "text": text}]
    try:
        return read(call.input), "", []
    except Malformed as exc:
        fix = f"Invalid {name} input: {exc}. Fix it and call {name} again."
        return None, str(exc), [_result(call.id, fix, error=True), *others]


def _result(tool_use_id: str, text: str, *, error: bool) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": text, "is_error": error}


def _reason(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{what} must be a string")
    return value.strip()[:MAX_REASON]


# --- scoring attempts ------------------------------------------------------------------------------


def read_scores(data: object, indexes: Sequence[int]) -> tuple[Score, ...]:
    """Every index in ``indexes`` scored exactly once, each score a number in [0, 10]; Malformed else."""
    rows = data.get("scores") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        raise Malformed("'scores' must be a list of {index, score, reason}")
    found: dict[int, Score] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise Malformed("each score must be an object with index, score and reason")
        index, score = row.get("index"), row.get("score")
        if isinstance(index, bool) or not isinstance(index, int) or index not in indexes:
            raise Malformed(f"unknown attempt index {index!r} (the attempts are {_listed(indexes)})")
        if index in found:
            raise Malformed(f"attempt {index} is scored twice")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise Malformed(f"the score of attempt {index} must be a number")
        if not 0 <= score <= 10:
            raise Malformed(f"the score of attempt {index} is {score}, outside 0-10")
        reason = _reason(row.get("reason"), f"the reason of attempt {index}")
        found[index] = Score(index, float(score), reason)
    missing = [i for i in indexes if i not in found]
    if missing:
        raise Malformed(f"attempt(s) {_listed(missing)} not scored: score every attempt exactly once")
    return tuple(found[i] for i in indexes)


def _listed(indexes: Sequence[int]) -> str:
    return ", ".join(str(i) for i in indexes)


def _clip(text: str, limit: int = MAX_ATTEMPT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... cut: {len(text) - limit} more characters not shown]"


class ClaudeReviewer:
    """``ports.Reviewer`` backed by the session's model (judges ``reviewer`` and ``weighted``)."""

    def __init__(self, session: LLMSession) -> None:
        self._session = session
        self._keys: dict[str, set[str]] = {}  # the ledger keys used, by subtask id

    async def score(
        self, subtask: Subtask, attempts: Sequence[AttemptView], role: str = ""
    ) -> tuple[Score, ...]:
        """One score per attempt; every score ``abstained`` (with the reason) when the answer was malformed
        twice or the model call failed."""
        indexes = [a.index for a in attempts]
        if not indexes:
            return ()
        shown = [(a.index, _clip(a.diff), _clip(a.checks)) for a in attempts]
        brief = prompts.reviewer_brief(subtask, shown, role, secrets.token_hex(8))
        key = f"{REVIEWER_KEY}:{subtask.id}" + (f":{role}" if role else "")
        self._keys.setdefault(subtask.id, set()).add(key)
        scores, problem = await ask(
            self._session,
            key,
            prompts.REVIEWER_SYSTEM,
            brief,
            SUBMIT_SCORES,
            lambda data: read_scores(data, indexes),
        )
        if scores is None:
            return tuple(Score(i, 0.0, problem, abstained=True) for i in indexes)
        return scores

    def usage(self, subtask: str = "") -> Usage:
        """What this reviewer's requests cost so far: all of them, or only those scoring ``subtask``'s."""
        chosen = [self._keys.get(subtask, set())] if subtask else list(self._keys.values())
        total = Usage()
        for key in sorted(set().union(*chosen)):
            total = total + self._session.ledger.usage(key)
        return total


# --- the review panel ------------------------------------------------------------------------------


def read_vote(data: object) -> tuple[bool, str]:
    """(approve, reasons); Malformed unless the verdict is ``approve`` or ``request_changes``."""
    verdict = data.get("verdict") if isinstance(data, Mapping) else None
    if verdict not in ("approve", "request_changes"):
        raise Malformed(f"'verdict' must be 'approve' or 'request_changes', got {verdict!r}")
    assert isinstance(data, Mapping)
    return verdict == "approve", _reason(data.get("reasons"), "'reasons'")


class ClaudeVoter:
    """``ports.PanelVoter`` backed by the session's model: one vote per call, charged to ``panel:<voter>``."""

    def __init__(self, session: LLMSession) -> None:
        self._session = session

    async def vote(self, task: str, diff: str, role: str, voter: str) -> PanelVote:
        brief = prompts.voter_brief(task, diff, role, voter, secrets.token_hex(8))
        key = f"{PANEL_KEY}:{voter}"
        answer, problem = await ask(self._session, key, prompts.VOTER_SYSTEM, brief, SUBMIT_VOTE, read_vote)
        usage = self._session.ledger.usage(key)  # one vote per voter name and run
        if answer is None:
            return PanelVote(voter, role, approve=False, reasons=problem, abstained=True, usage=usage)
        approve, reasons = answer
        return PanelVote(voter, role, approve=approve, reasons=reasons, usage=usage)

"""Scripts for the fake Anthropic API: which reply each conversation gets, which faults to inject, which
rate limits to enforce.

A conversation is recognised by a regular expression searched in its *key text* (the system prompt, a blank
line, then the first user message). Its replies are served by turn: the n-th reply answers a request whose
``messages`` hold n assistant messages, so retries and concurrent conversations need no server state.
Named groups of the match fill ``${name}`` placeholders in the replies.

A reply is one of (JSON / YAML friendly)::

    {"text": "..."}                                   → a text block, stop_reason end_turn
    {"tool": "write_file", "input": {...}}            → a tool_use block, stop_reason tool_use
    {"tools": [{"name": ..., "input": {...}}, ...]}   → several tool_use blocks
    {"content": [raw content blocks]}                 → as given
    optional: "text" before tools, "stop_reason", "output_tokens"

A script file is ``{"conversations": [{"name", "match", "replies", "after"}], "faults": [...],
"limits": {"rpm", "itpm", "otpm", "window", "precise_retry_after"}, "latency", "api_keys",
"min_cache_tokens"}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import yaml

from ci_swarm.errors import UsageError
from ci_swarm.llm.prompts import PLANNER_MARKER, SUBTASK_MARKER

Reply = Mapping[str, Any]
# A Python responder (in-process use): (request body, turn, match groups) -> reply
Responder = Callable[[Mapping[str, Any], int, Mapping[str, str]], Reply]

FAULT_KINDS = (
    "rate_limit",  # 429 rate_limit_error with retry-after / retry-after-ms
    "overloaded",  # 529 overloaded_error
    "server_error",  # 500 api_error
    "error_event",  # streaming only: an `error` event after the first content delta
    "malformed_tool_input",  # tool_use input replaced by `input` (default {}), or broken JSON when streaming
    "latency",  # extra `seconds` before the response
)


@dataclass(frozen=True)
class Conversation:
    name: str
    match: str
    replies: tuple[Reply, ...] = ()
    after: str = "end"  # when replies run out: "end" (a closing text reply) | "repeat" (the last reply again)
    respond: Responder | None = None

    def reply(self, body: Mapping[str, Any], turn: int, groups: Mapping[str, str]) -> Reply:
        if self.respond is not None:
            return self.respond(body, turn, groups)
        if turn < len(self.replies):
            chosen = self.replies[turn]
        elif self.after == "repeat" and self.replies:
            chosen = self.replies[-1]
        else:
            chosen = {"text": f"(fake-anthropic: script {self.name!r} has no reply for turn {turn})"}
        filled: Reply = substitute(chosen, groups)
        return filled


@dataclass(frozen=True)
class Fault:
    kind: str
    times: int = 1
    match: str = ""  # regex on the key text; "" = every conversation
    turn: int | None = None  # only at this turn
    retry_after: float | None = None  # seconds, sent as `retry-after`
    retry_after_ms: int | None = None  # sent as `retry-after-ms`
    seconds: float = 0.0  # latency
    input: Mapping[str, Any] | None = None  # malformed_tool_input replacement


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    itpm: int | None = None  # input tokens per window (uncached input + cache writes, like the API)
    otpm: int | None = None  # output tokens per window (max_tokens reserved up front, then corrected)
    window: float = 60.0  # seconds; shorten it in tests
    precise_retry_after: bool = False  # also send retry-after-ms (the real API sends whole seconds)


@dataclass(frozen=True)
class Script:
    conversations: tuple[Conversation, ...] = ()
    faults: tuple[Fault, ...] = ()
    limits: Limits = Limits()
    latency: float = 0.0  # seconds added to every response
    api_keys: tuple[str, ...] = ()  # accepted keys; () accepts any non-empty key
    min_cache_tokens: int = 1024  # shortest cacheable prefix
    stream_chunk: int = 24  # characters per text / JSON delta when streaming
    extra: Mapping[str, Any] = field(default_factory=dict)

    def find(self, key_text: str) -> tuple[Conversation | None, dict[str, str]]:
        for conv in self.conversations:
            found = re.search(conv.match, key_text, re.DOTALL)
            if found:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                return conv, groups
        return None, {}


def substitute(value: Any, groups: Mapping[str, str]) -> Any:
    """Fill ``${name}`` placeholders in every string of a reply."""
    if not groups:
        return value
    if isinstance(value, str):
        return Template(value).safe_substitute(groups)
    if isinstance(value, Mapping):
        return {k: substitute(v, groups) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, groups) for v in value]
    return value


# --- reading script files -------------------------------------------------------------------------


def load_script(path: Path) -> Script:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read fake-anthropic script: {exc}") from exc
    if not isinstance(data, Mapping):
        raise UsageError(f"{path}: a fake-anthropic script must be a mapping")
    return script_from_dict(data, source=str(path))


def script_from_dict(data: Mapping[str, Any], *, source: str = "<script>") -> Script:
    try:
        convs = tuple(_conversation(c, i) for i, c in enumerate(data.get("conversations") or ()))
        faults = tuple(Fault(**f) for f in data.get("faults") or ())
        limits = Limits(**(data.get("limits") or {}))
    except (TypeError, AttributeError) as exc:
        raise UsageError(f"{source}: malformed fake-anthropic script: {exc}") from exc
    for fault in faults:
        if fault.kind not in FAULT_KINDS:
            raise UsageError(f"{source}: unknown fault kind {fault.kind!r} (known: {', '.join(FAULT_KINDS)})")
    return Script(
        conversations=convs,
        faults=faults,
        limits=limits,
        latency=float(data.get("latency", 0.0)),
        api_keys=tuple(data.get("api_keys") or ()),
        min_cache_tokens=int(data.get("min_cache_tokens", 1024)),
    )


def _conversation(raw: Mapping[str, Any], index: int) -> Conversation:
    return Conversation(
        name=str(raw.get("name", f"conversation-{index + 1}")),
        match=str(raw["match"]),
        replies=tuple(raw.get("replies") or ()),
        after=str(raw.get("after", "end")),
    )


def script_to_dict(script: Script) -> dict[str, Any]:
    """The JSON form of a script (Python responders cannot be written out)."""
    if any(c.respond is not None for c in script.conversations):
        raise UsageError("a script with Python responders cannot be written as JSON")
    return {
        "conversations": [
            {"name": c.name, "match": c.match, "replies": list(c.replies), "after": c.after}
            for c in script.conversations
        ],
        "faults": [{k: v for k, v in vars(f).items() if v is not None} for f in script.faults],
        "limits": vars(script.limits),
        "latency": script.latency,
        "api_keys": list(script.api_keys),
        "min_cache_tokens": script.min_cache_tokens,
    }


# --- a whole `ci-swarm run --task` worth of replies --------------------------------------------------

PLANNER_MATCH = re.escape(PLANNER_MARKER)


@dataclass(frozen=True)
class ScriptedSubtask:
    """One subtask the scripted planner proposes, and the tool calls its agent makes (then `finish`)."""

    id: str
    role: str
    title: str
    paths: tuple[str, ...] = ()
    instructions: str = ""
    depends_on: tuple[str, ...] = ()
    calls: tuple[Mapping[str, Any], ...] = ()  # {"tool": name, "input": {...}}
    summary: str = ""


def subtask_match(subtask_id: str) -> str:
    """The regex that recognises the agent conversation of ``subtask_id`` (see ``llm.prompts``)."""
    return rf"{re.escape(SUBTASK_MARKER)}{re.escape(subtask_id)}\n"


def task_script(
    subtasks: Sequence[ScriptedSubtask],
    *,
    rationale: str = "Split by concern so the agents can work in parallel.",
    min_cache_tokens: int = 256,
    latency: float = 0.0,
    faults: Sequence[Fault] = (),
    limits: Limits = Limits(),
) -> Script:
    """A script for ``ci-swarm run --task``: the planner submits ``subtasks``; each agent makes its calls
    one per turn and then calls ``finish``."""
    plan_input = {
        "rationale": rationale,
        "subtasks": [
            {
                "id": s.id,
                "role": s.role,
                "title": s.title,
                "instructions": s.instructions or s.title,
                "paths": list(s.paths),
                "depends_on": list(s.depends_on),
            }
            for s in subtasks
        ],
    }
    planner = Conversation("planner", PLANNER_MATCH, ({"tool": "submit_plan", "input": plan_input},))
    agents = tuple(
        Conversation(
            s.id,
            subtask_match(s.id),
            (*s.calls, {"tool": "finish", "input": {"summary": s.summary or f"{s.title}: done"}}),
        )
        for s in subtasks
    )
    return Script(
        conversations=(planner, *agents),
        faults=tuple(faults),
        limits=limits,
        latency=latency,
        min_cache_tokens=min_cache_tokens,
    )


def write_file_call(path: str, content: str) -> dict[str, Any]:
    return {"tool": "write_file", "input": {"path": path, "content": content}}


def edit_file_call(path: str, old: str, new: str) -> dict[str, Any]:
    return {"tool": "edit_file", "input": {"path": path, "old": old, "new": new}}

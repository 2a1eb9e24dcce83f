"""When a command agent's run counts as a success (``success:``, per agent or as a job's or the config's
default): a list of exit codes (``[0, 1]`` for pyupgrade, which exits 1 when it rewrote a file), or
``changes`` — the diff is the result, the exit code is reported but not judged. A process ended by a
signal, its timeout or a stop never succeeds. Also: which of a shard's files a failing tool's output names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ci_swarm.errors import PlanError
from ci_swarm.sandbox import ProcessResult

Success = frozenset[int] | Literal["changes"]
CHANGES: Literal["changes"] = "changes"
EXIT_ZERO: Success = frozenset({0})
# words of a line that reports a problem with a file (ruff "error: Failed to parse x.py", pyupgrade
# "x.py is non-utf-8 (not supported)", tracebacks, "cannot"/"could not" …)
_TROUBLE = re.compile(
    r"error|fail|cannot|can't|could not|couldn't|invalid|not supported|non-utf|exception|traceback|syntax",
    re.IGNORECASE,
)
_TRIM = "\"'`()[]{}<>,;"
MAX_NAMED = 50  # failed files named at most


def parse(value: Any, where: str = "<agent>") -> Success:
    """``success:`` → the rule; None → exit 0 only. PlanError for anything else than a non-empty list of
    exit codes (0–255) or ``changes``."""
    if value is None:
        return EXIT_ZERO
    if value == CHANGES:
        return CHANGES
    if (
        isinstance(value, str | bytes | Mapping)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise PlanError(
            f"{where}: 'success' must be a list of exit codes such as [0, 1], or 'changes', got {value!r}"
        )
    return frozenset(value)


def judge(rule: Success, result: ProcessResult) -> bool:
    """Whether ``result`` is a success under ``rule``."""
    if result.timed_out or result.cancelled or result.returncode is None:
        return False
    return rule == CHANGES or result.returncode in rule


def describe(rule: Success) -> str:
    """``exit 0``, ``exit 0 or 1``, ``changes (any exit)``."""
    if rule == CHANGES:
        return "changes (any exit)"
    return "exit " + " or ".join(str(code) for code in sorted(rule))


def failed_files(output: str, paths: Sequence[str]) -> tuple[str, ...]:
    """The shard's files that a line of ``output`` reporting a problem names (the tool's word, in order
    of first mention; at most :data:`MAX_NAMED`)."""
    known = set(paths)
    named: dict[str, None] = {}
    for line in output.splitlines():
        if not _TROUBLE.search(line):
            continue
        for word in line.split():
            path = _as_path(word, known)
            if path is not None:
                named.setdefault(path)
        if len(named) >= MAX_NAMED:
            break
    return tuple(named)[:MAX_NAMED]


def _as_path(word: str, known: set[str]) -> str | None:
    word = word.strip(_TRIM)
    word = word.removeprefix("./")
    for candidate in (word, word.split(":", 1)[0]):
        if candidate in known:
            return candidate
    return None

"""The scripted agent's ``edits`` option: write / replace / append / delete, parsed into ``Edit`` values
with errors naming the edit, key or path at fault (a path with a backslash is refused here, as the
workspace and collection refuse it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci_swarm.errors import PathEscapeError, PlanError
from ci_swarm.paths import check_edit_path
from ci_swarm.plan import kind_of
from ci_swarm.workspace import BACKSLASH

EDIT_OPS = ("write", "replace", "append", "delete")
_EDIT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "write": ("content",),
    "replace": ("old", "new"),
    "append": ("text",),
    "delete": (),
}


@dataclass(frozen=True)
class Edit:
    """One scripted edit: op is write | replace | append | delete."""

    op: str
    path: str
    content: str = ""  # write: the new content; append: the text
    old: str = ""  # replace only
    new: str = ""  # replace only


def parse_edits(raw: Any, where: str = "<agent>") -> tuple[Edit, ...]:
    """Scripted ``edits`` → Edit values; PlanError names the edit, key or path at fault."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PlanError(f"{where}: 'agent.edits' must be a list, got {kind_of(raw)}")
    return tuple(_edit(item, n, where) for n, item in enumerate(raw, 1))


def _edit(raw: Any, n: int, where: str) -> Edit:
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: edit #{n} must be a mapping, got {kind_of(raw)}")
    ops = [op for op in EDIT_OPS if op in raw]
    if len(ops) != 1:
        raise PlanError(f"{where}: edit #{n} needs exactly one of {', '.join(EDIT_OPS)}")
    op = ops[0]
    path = raw[op]
    if not isinstance(path, str):
        raise PlanError(f"{where}: edit #{n} '{op}' must be a path string, got {kind_of(path)}")
    extra = set(raw) - {op, *_EDIT_FIELDS[op]}
    if extra:
        raise PlanError(f"{where}: edit #{n} ({op} {path}) has unknown key {sorted(map(str, extra))[0]!r}")
    values = {}
    for key in _EDIT_FIELDS[op]:
        value = raw.get(key)
        if not isinstance(value, str):
            raise PlanError(f"{where}: edit #{n} ({op} {path}) needs '{key}' (a string)")
        values[key] = value
    try:
        if "\\" in path:
            raise PathEscapeError(f"path {path!r} refused: {BACKSLASH}")
        check_edit_path(path)
    except PathEscapeError as exc:
        raise PlanError(f"{where}: edit #{n}: {exc}") from exc
    if op == "replace" and not values["old"]:
        raise PlanError(f"{where}: edit #{n} (replace {path}) has an empty 'old'")
    return Edit(
        op=op,
        path=path,
        content=values.get("content", values.get("text", "")),
        old=values.get("old", ""),
        new=values.get("new", ""),
    )

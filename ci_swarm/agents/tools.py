"""The tools a model-driven agent uses inside its worktree, bound to a :class:`Workspace`.

Names and inputs are a contract (see ``TOOL_SCHEMAS``): ``list_files {path?, pattern?}``,
``read_file {path, start_line?, end_line?}``, ``search {pattern, path?}``, ``write_file {path, content}``,
``edit_file {path, old, new}``, ``delete_file {path}``, ``run_command {argv}``, ``finish {summary}``.

Every refusal — a path outside the worktree or under ``.git/``, an ``old`` text that does not match exactly
once, a command not on the allow-list, a missing field — is an error *result* the model can read and act
on, never an exception. ``run_command`` runs an allowed command through the sandbox (:mod:`ci_swarm.sandbox`,
the run's policy): no shell, the sandbox's allow-listed environment (nothing of ci-swarm's own), only the
workspace writable, the whole process tree ended at the timeout; its output is truncated.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ci_swarm import git, sandbox
from ci_swarm.agents import checktool, textedit
from ci_swarm.allowlist import command_allowed
from ci_swarm.errors import GitError, PathEscapeError, UsageError
from ci_swarm.models import Check
from ci_swarm.sandbox import ProcessSpec, SandboxPolicy
from ci_swarm.workspace import Workspace, matches_any

MAX_LIST = 1000
MAX_READ_CHARS = 100_000
MAX_OUTPUT_CHARS = 16_000
NOT_UTF8 = "(the name is not UTF-8: shown with \\xNN escapes; no tool can name it)"


def _schema(props: Mapping[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "properties": dict(props), "required": list(required)}


_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 1}

TOOL_SCHEMAS: tuple[dict[str, Any], ...] = (
    {
        "name": "list_files",
        "description": "List files under a directory of the worktree (default: the root), optionally only "
        "those matching a glob pattern (`*` within a name, `**` across directories).",
        "input_schema": _schema({"path": _STR, "pattern": _STR}, []),
    },
    {
        "name": "read_file",
        "description": "Read a text file, optionally only lines start_line..end_line (1-based, inclusive).",
        "input_schema": _schema({"path": _STR, "start_line": _INT, "end_line": _INT}, ["path"]),
    },
    {
        "name": "search",
        "description": "Search file contents with a regular expression (git grep); optional path limits it.",
        "input_schema": _schema({"pattern": _STR, "path": _STR}, ["pattern"]),
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file with the given content (parent directories are created).",
        "input_schema": _schema({"path": _STR, "content": _STR}, ["path", "content"]),
    },
    {
        "name": "edit_file",
        "description": "Replace the text `old` with `new` in a file. `old` must match exactly once; include "
        "enough surrounding lines to make it unique.",
        "input_schema": _schema({"path": _STR, "old": _STR, "new": _STR}, ["path", "old", "new"]),
    },
    {
        "name": "delete_file",
        "description": "Delete a file.",
        "input_schema": _schema({"path": _STR}, ["path"]),
    },
    {
        "name": "run_command",
        "description": "Run an allowed command (argv list, no shell) in the worktree root; returns its exit "
        "code and output. Only commands on the configured allow-list may run.",
        "input_schema": _schema({"argv": {"type": "array", "items": _STR, "minItems": 1}}, ["argv"]),
    },
    {
        "name": "finish",
        "description": "Call once when the subtask is done, with a short summary of what you changed.",
        "input_schema": _schema({"summary": _STR}, ["summary"]),
    },
)
TOOL_NAMES = tuple(t["name"] for t in TOOL_SCHEMAS)
_BY_NAME = {t["name"]: t["input_schema"] for t in (*TOOL_SCHEMAS, checktool.SCHEMA)}


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool = False
    finished: bool = False  # `finish` was called (content is the summary)


def _error(text: str) -> ToolResult:
    return ToolResult(text, is_error=True)


def check_input(name: str, args: Any) -> str | None:
    """What is wrong with a tool call's input, or None (required fields, JSON types)."""
    schema = _BY_NAME.get(name)
    if schema is None:
        return f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}"
    if not isinstance(args, Mapping):
        return f"{name}: input must be an object"
    missing = [key for key in schema["required"] if key not in args]
    if missing:
        return f"{name}: missing required field(s): {', '.join(missing)}"
    for key, value in args.items():
        prop = schema["properties"].get(key)
        if prop is None:
            return f"{name}: unknown field {key!r}"
        if not _type_ok(prop, value):
            return f"{name}: field {key!r} must be {_type_word(prop)}"
    return None


def _type_ok(prop: Mapping[str, Any], value: Any) -> bool:
    kind = prop["type"]
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and value >= prop.get("minimum", value)
    return isinstance(value, list) and len(value) >= 1 and all(isinstance(v, str) for v in value)


def _type_word(prop: Mapping[str, Any]) -> str:
    return {"string": "a string", "integer": "a positive integer"}.get(
        prop["type"], "a non-empty list of strings"
    )


def truncate_output(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


class ToolBox:
    """Runs tool calls inside one workspace and remembers what was written where."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        allowed_commands: Sequence[Sequence[str]] = (),
        command_timeout: float = 300.0,
        strict_paths: bool = False,
        sandbox: SandboxPolicy | None = None,
        checks: Sequence[Check] = (),
    ) -> None:
        self.workspace = workspace
        self.allowed_commands = tuple(tuple(p) for p in allowed_commands)
        self.command_timeout = command_timeout
        self.strict_paths = strict_paths
        self.sandbox = sandbox  # None: whatever backend is available
        self.written: dict[str, None] = {}  # paths written or deleted, in order
        self.outside: dict[str, None] = {}  # of those, the ones outside the subtask's `paths`
        self.writes = 0  # every write, edit or delete (the checks' "changed since they passed")
        self.checks = checktool.CheckTool(workspace, checks, sandbox)
        self._handlers: dict[str, Callable[[Mapping[str, Any]], Awaitable[ToolResult]]] = {
            "list_files": self._list_files,
            "read_file": self._read_file,
            "search": self._search,
            "write_file": self._write_file,
            "edit_file": self._edit_file,
            "delete_file": self._delete_file,
            "run_command": self._run_command,
            "run_checks": self._run_checks,
            "finish": self._finish,
        }

    @property
    def schemas(self) -> tuple[dict[str, Any], ...]:
        """The tools this box offers the model: ``run_checks`` only when the run has checks."""
        return (*TOOL_SCHEMAS, checktool.SCHEMA) if self.checks.checks else TOOL_SCHEMAS

    async def run(self, name: str, args: Any) -> ToolResult:
        """The tool's result; its text always encodes as UTF-8 (bytes of names or output that are not
        UTF-8 are shown as ``\\xNN``), so it can go to the model."""
        result = await self._call(name, args)
        safe = wire_safe(result.content)
        return result if safe == result.content else replace(result, content=safe)

    async def _call(self, name: str, args: Any) -> ToolResult:
        problem = check_input(name, args)
        if problem:
            return _error(problem)
        try:
            return await self._handlers[name](args)
        except PathEscapeError as exc:
            return _error(f"refused: {exc}")
        except FileNotFoundError:
            return _error(f"{args.get('path', '')}: no such file")
        except IsADirectoryError:
            return _error(f"{args.get('path', '')}: is a directory")
        except NotADirectoryError:
            return _error(f"{args.get('path', '')}: a parent is not a directory")
        except GitError as exc:
            return _error(f"search failed: {exc}")
        except UnicodeEncodeError:
            return _error(f"{name}: the text is not valid Unicode (it holds a lone surrogate)")
        except OSError as exc:
            return _error(f"{name} failed: {exc.strerror or exc}")

    # --- reading ---------------------------------------------------------------------------------

    async def _list_files(self, args: Mapping[str, Any]) -> ToolResult:
        base = self.workspace.resolve(args.get("path", "."))
        if not base.is_dir():
            return _error(f"{args.get('path')}: not a directory")
        pattern = args.get("pattern")
        base_rel = self.workspace.relative(base)
        walked = self._walk(base)
        found = sorted(entry for entry in walked if not pattern or _glob_match(entry[0], pattern, base_rel))
        lines = [shown for _, shown in found[:MAX_LIST]]
        more = f"\n[... {len(found) - MAX_LIST} more files]" if len(found) > MAX_LIST else ""
        return ToolResult("\n".join(lines) + more if lines else "(no files)")

    def _walk(self, base: Path) -> list[tuple[str, str]]:
        """(worktree path, how it is listed) of every file and symlink under ``base`` (resolved, inside
        the worktree); symlinks are listed as ``link -> target`` and never followed, dangling or not."""
        root = self.workspace.root.resolve()
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            dirnames[:] = sorted(d for d in dirnames if d != ".git" and d not in links)
            for name in [*filenames, *links]:
                if name != ".git":  # a worktree's .git is a file
                    entry = Path(dirpath, name)
                    rel = entry.relative_to(root).as_posix()
                    shown = f"{rel} -> {os.readlink(entry)}" if entry.is_symlink() else rel
                    out.append((rel, shown if wire_safe(rel) == rel else f"{shown} {NOT_UTF8}"))
        return out

    async def _read_file(self, args: Mapping[str, Any]) -> ToolResult:
        text = self.workspace.read_text(args["path"])
        lines = text.splitlines(keepends=True)
        start = args.get("start_line", 1)
        end = min(args.get("end_line", len(lines)), len(lines))
        if start > max(len(lines), 1) or end < start:
            return _error(
                f"{args['path']}: lines {start}-{end} out of range (the file has {len(lines)} lines)"
            )
        chunk = "".join(lines[start - 1 : end])
        if len(chunk) > MAX_READ_CHARS:
            chunk = chunk[:MAX_READ_CHARS]
            return ToolResult(f"{chunk}\n[... cut at {MAX_READ_CHARS} characters; read smaller line ranges]")
        return ToolResult(chunk if chunk else "(empty file)")

    async def _search(self, args: Mapping[str, Any]) -> ToolResult:
        path = args.get("path")
        rel = self.workspace.relative(self.workspace.resolve(path)) if path else None
        found = git.grep(self.workspace.root, args["pattern"], rel)
        return ToolResult(truncate_output(found) if found else "(no matches)")

    # --- writing ---------------------------------------------------------------------------------

    def _claim(self, path: str, *, follow: bool = True) -> tuple[str, str | None]:
        """The worktree path written (a symlink's target unless ``follow`` is off: a delete removes the
        link itself), and a refusal when it may not be written: strict paths, or ci-swarm could not commit
        it (:meth:`Workspace.writable`: a name git refuses, a path inside a submodule)."""
        ws = self.workspace
        rel = ws.relative(ws.resolve(path)) if follow else ws.relative_entry(ws.entry(path))
        ws.writable(path, rel)
        if ws.owns(rel):
            return rel, None
        if self.strict_paths:
            owned = ", ".join(ws.owned)
            return rel, f"refused: {rel} is outside this subtask's paths ({owned}) and strict_paths is on"
        return rel, None

    def _record(self, rel: str) -> str:
        self.writes += 1
        self.written[rel] = None
        if not self.workspace.owns(rel):
            self.outside[rel] = None
            return f" (note: {rel} is outside this subtask's paths; it will be flagged in the report)"
        return ""

    async def _write_file(self, args: Mapping[str, Any]) -> ToolResult:
        rel, refusal = self._claim(args["path"])
        if refusal:
            return _error(refusal)
        self.workspace.write_text(rel, args["content"])
        return ToolResult(f"wrote {rel} ({len(args['content'].encode())} bytes){self._record(rel)}")

    async def _edit_file(self, args: Mapping[str, Any]) -> ToolResult:
        """Replace ``old`` (matching LF or CRLF line breaks alike) once; the file's other bytes, line
        endings included, stay as they were (:mod:`ci_swarm.agents.textedit`)."""
        rel, refusal = self._claim(args["path"])
        if refusal:
            return _error(refusal)
        if not args["old"]:
            return _error("edit_file: `old` must not be empty (use write_file to create a file)")
        text = textedit.decode(self.workspace.read_bytes(rel))
        spans = textedit.find(text, args["old"])
        if len(spans) != 1:
            hint = "" if not spans else "; include more surrounding text to make it unique"
            return _error(
                f"edit_file: `old` matched {len(spans)} times in {rel}, it must match exactly once{hint}"
            )
        self.workspace.write_bytes(rel, textedit.encode(textedit.replace(text, spans[0], args["new"])))
        return ToolResult(f"edited {rel}{self._record(rel)}")

    async def _delete_file(self, args: Mapping[str, Any]) -> ToolResult:
        rel, refusal = self._claim(args["path"], follow=False)
        if refusal:
            return _error(refusal)
        self.workspace.delete(rel)
        return ToolResult(f"deleted {rel}{self._record(rel)}")

    # --- commands and the end ----------------------------------------------------------------------

    async def _run_command(self, args: Mapping[str, Any]) -> ToolResult:
        argv = list(args["argv"])
        if not command_allowed(argv, self.allowed_commands):
            allowed = "; ".join(" ".join(p) for p in self.allowed_commands) or "none"
            return _error(f"refused: {' '.join(argv)!r} is not on the allow-list (allowed: {allowed})")
        if "/" not in argv[0] and shutil.which(argv[0], path=sandbox.SANE_PATH) is None:
            return _error(f"{argv[0]}: command not found")
        spec = ProcessSpec(
            argv=tuple(argv),
            cwd=self.workspace.root,
            timeout=self.command_timeout,
            output_limit=MAX_OUTPUT_CHARS * 4,
            writable_dirs=(self.workspace.root,),
        )
        try:
            result = await sandbox.run(spec, self.sandbox or sandbox.resolve_policy(None))
        except UsageError as exc:  # no sandbox available (a SandboxError, a broken set-up, ends the agent)
            return _error(f"{' '.join(argv)}: cannot run: {exc}")
        if result.timed_out:
            return _error(f"{' '.join(argv)}: timed out after {self.command_timeout:g}s and was killed")
        code = result.returncode if result.returncode is not None else -(result.signal or 0)
        return ToolResult(f"exit code {code}\n{truncate_output(result.output)}", is_error=code != 0)

    async def _run_checks(self, args: Mapping[str, Any]) -> ToolResult:
        ok, text = await self.checks.run(self.writes)
        return ToolResult(text, is_error=not ok)

    async def _finish(self, args: Mapping[str, Any]) -> ToolResult:
        """Finish — unless the run has checks that have not passed on the worktree as it is: then they run
        first, once, and a failure goes back to the model instead (a second ``finish`` ends anyway)."""
        if self.checks.holds_back_finish(self.writes):
            self.checks.gated = True
            ok, text = await self.checks.run(self.writes)
            if not ok:
                return _error(f"not finished: the checks fail on your work. {text}\nFix it, then finish.")
        return ToolResult(args["summary"], finished=True)


def wire_safe(text: str) -> str:
    """``text`` with the surrogates that stand for bytes that are not UTF-8 (file names, command output)
    written as ``\\xNN``, and any other lone surrogate as ``\\udNNN``: text that encodes as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _glob_match(rel: str, pattern: str, base: str) -> bool:
    """``pattern`` relative to the listed directory; a pattern without ``/`` also matches any file name."""
    inside = rel if base in ("", ".") else rel[len(base) + 1 :]
    return matches_any(inside, [pattern]) or (
        "/" not in pattern and fnmatch.fnmatchcase(Path(rel).name, pattern)
    )

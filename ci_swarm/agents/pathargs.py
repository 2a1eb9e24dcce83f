"""A command agent's argv from its template and its subtask's paths: ``{paths}`` as a whole argument
becomes one argument per path (inside a larger argument it is the paths joined by spaces), and the paths
are cut into chunks so that each argv stays below a safe bound under the OS limit (the command then runs
once per chunk). ``{paths_file}`` names a file listing the chunk's paths, one per line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence

PATHS = "{paths}"
PATHS_FILE = "{paths_file}"
ARGV_BOUND = 124 * 1024  # bytes of argv per run at most (under Linux's 128 KiB for one argument too)
_PLACEHOLDER = re.compile(r"\{(instructions|title|id|role|task|paths|paths_file)\}")


def argv_bound() -> int:
    """Bytes of argv one run may use: 124 KiB, or a quarter of ``ARG_MAX`` when that is smaller (the
    environment shares the limit)."""
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        arg_max = -1
    return min(ARGV_BOUND, arg_max // 4) if arg_max > 0 else ARGV_BOUND


def uses_paths(template: Sequence[str]) -> bool:
    """Whether the argv names ``{paths}`` anywhere (then a long list is run in chunks)."""
    return any(PATHS in arg for arg in template)


def uses_paths_file(template: Sequence[str]) -> bool:
    return any(PATHS_FILE in arg for arg in template)


def expand(
    template: Sequence[str], values: Mapping[str, str], paths: Sequence[str], paths_file: str = ""
) -> tuple[str, ...]:
    """The argv for ``paths``: an argument that is exactly ``{paths}`` becomes one argument per path;
    every other placeholder (and ``{paths}`` inside a larger argument, as the paths joined by spaces) is
    replaced in one pass (substituted text is not re-expanded)."""
    table = {**values, "paths": " ".join(paths), "paths_file": paths_file}
    argv: list[str] = []
    for arg in template:
        if arg == PATHS:
            argv.extend(paths)
        else:
            argv.append(_PLACEHOLDER.sub(lambda m: table[m.group(1)], arg))
    return tuple(argv)


def argv_size(argv: Sequence[str]) -> int:
    """Bytes the kernel counts for ``argv`` (each argument and its NUL)."""
    return sum(len(os.fsencode(arg)) + 1 for arg in argv)


def chunks(
    paths: Sequence[str], render: Callable[[Sequence[str]], Sequence[str]], bound: int
) -> tuple[tuple[str, ...], ...]:
    """``paths`` cut into successive chunks whose rendered argv stays within ``bound`` bytes (a path whose
    argv alone is larger gets a chunk of its own: the OS will say whether it fits). One chunk when all fit;
    one empty chunk when there are no paths."""
    if not paths:
        return ((),)
    fixed = argv_size(render(()))
    per_path = _occurrences(render)
    out: list[tuple[str, ...]] = []
    current: list[str] = []
    size = fixed
    for path in paths:
        cost = (len(os.fsencode(path)) + 1) * per_path
        if current and size + cost > bound:
            out.append(tuple(current))
            current, size = [], fixed
        current.append(path)
        size += cost
    out.append(tuple(current))
    return tuple(out)


def _occurrences(render: Callable[[Sequence[str]], Sequence[str]]) -> int:
    """How many times each path appears in the rendered argv (at least once, to stay conservative)."""
    probe = "\0probe\0"
    return max(1, sum(arg.count(probe) for arg in render((probe,))))

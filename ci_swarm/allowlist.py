"""Allow-lists of commands: which argv a plan or an agent may run (``allowed_commands`` in the config).

A pattern is a prefix of argv whose elements are globs: ``("pytest",)`` allows ``pytest -q tests/``;
``("python", "-m", "pytest")`` allows only that module. Pure; used by the service's command policy and the
Claude agent's ``run_command`` tool.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def command_allowed(argv: Sequence[str], patterns: Sequence[Sequence[str]]) -> bool:
    """True when some non-empty pattern is a prefix of ``argv`` (each element matched as a glob)."""
    return any(
        len(argv) >= len(p) and all(fnmatch.fnmatchcase(a, pe) for a, pe in zip(argv, p, strict=False))
        for p in patterns
        if p
    )

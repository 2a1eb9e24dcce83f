"""What an agent's commit changed, for the reports: its diffstat (``git diff --numstat start..commit``)
and the changed files that lie outside the subtask's owned ``paths`` (:func:`ci_swarm.workspace.matches_any`,
the rule agents' workspaces use) — computed here for every agent kind, from the commit, not from what the
agent says it did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ci_swarm import git
from ci_swarm.models import Diffstat
from ci_swarm.workspace import matches_any


def diffstat(repo: Path, start: str, commit: str) -> Diffstat:
    """Files changed, lines inserted and deleted from ``start`` to ``commit`` (renames as delete + add)."""
    if not start or not commit or start == commit:
        return Diffstat()
    data = git.run(repo, "diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", start, commit).text
    return parse_numstat(data)


def parse_numstat(data: str) -> Diffstat:
    """``--numstat -z`` output (``added<TAB>deleted<TAB>path<NUL>``; ``-`` counts for a binary file)."""
    files = insertions = deletions = 0
    for entry in data.split("\0"):
        fields = entry.split("\t", 2)
        if len(fields) != 3:
            continue
        files += 1
        insertions += int(fields[0]) if fields[0].isdigit() else 0
        deletions += int(fields[1]) if fields[1].isdigit() else 0
    return Diffstat(files, insertions, deletions)


def outside_paths(
    files: Iterable[str], owned: Sequence[str], reported: Iterable[str] = ()
) -> tuple[str, ...]:
    """What the agent reported as written outside ``owned``, then every changed file ``owned`` does not
    cover (none when the subtask owns no paths: it may write anywhere), each once."""
    found = dict.fromkeys(reported)
    if owned:
        found.update(dict.fromkeys(f for f in files if not matches_any(f, owned)))
    return tuple(found)

"""Path and glob rules of a plan: whether two ``paths`` globs may overlap, which concurrent subtasks own
overlapping paths (a warning, not an error: the merge queue resolves such edits hunk by hunk), how to
serialize them, and which paths an edit may name. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from ci_swarm.dag import dag_concurrent_pairs, deps_of
from ci_swarm.errors import PathEscapeError
from ci_swarm.models import Plan
from ci_swarm.workspace import check_relative, glob_to_regex, matches_any

Overlap = tuple[str, str, tuple[str, ...]]


def check_edit_path(path: str) -> None:
    """Refuse an edit path that is absolute, climbs out with ``..`` or lies under ``.git/``."""
    if str(check_relative(path)) == ".":
        raise PathEscapeError(f"path {path!r} names the worktree itself, not a file")


# --- ownership overlap --------------------------------------------------------------------------


def ownership_overlaps(plan: Plan) -> tuple[Overlap, ...]:
    """``(a, b, patterns)`` for each concurrent pair (plan order) whose ``paths`` globs may overlap."""
    concurrent = dag_concurrent_pairs(deps_of(plan), [s.id for s in plan.subtasks])
    found = []
    subs = plan.subtasks
    for i, a in enumerate(subs):
        for b in subs[i + 1 :]:
            if frozenset((a.id, b.id)) not in concurrent:
                continue
            shared = _shared_patterns(a.paths, b.paths)
            if shared:
                found.append((a.id, b.id, shared))
    return tuple(found)


def overlap_warning(a: str, b: str, patterns: Sequence[str]) -> str:
    return (
        f"subtasks {a!r} and {b!r} may run at the same time and both own {', '.join(patterns)}: "
        "the merge queue will resolve their edits hunk by hunk (or use --serialize-overlaps)"
    )


def serialize_overlaps(plan: Plan) -> Plan:
    """Add ``depends_on`` edges (later in plan order waits for earlier) between overlapping concurrent
    subtasks, re-checking concurrency after each edge so no cycle can appear."""
    deps = {s.id: list(s.depends_on) for s in plan.subtasks}
    order = [s.id for s in plan.subtasks]
    pairs = sorted(
        ((a, b) for a, b, _ in ownership_overlaps(plan)),
        key=lambda p: (order.index(p[1]), -order.index(p[0])),
    )
    for a, b in pairs:  # nearest earlier subtask first: a chain, not a fan of redundant edges
        if frozenset((a, b)) in dag_concurrent_pairs(deps, order):
            deps[b].append(a)
    subtasks = tuple(replace(s, depends_on=tuple(deps[s.id])) for s in plan.subtasks)
    return replace(plan, subtasks=subtasks)


def _shared_patterns(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for pa in a:
        for pb in b:
            if globs_may_overlap(pa, pb):
                label = pa if pa == pb else f"{pa} ~ {pb}"
                if label not in out:
                    out.append(label)
    return tuple(out)


# --- glob intersection --------------------------------------------------------------------------


def globs_may_overlap(a: str, b: str) -> bool:
    """Whether some path could match both globs (conservative: when unsure, True).

    A glob without wildcards also covers everything under it (a directory), as in ``matches_any``.
    """
    a, b = a.strip("/"), b.strip("/")
    if a == b or matches_any(a, [b]) or matches_any(b, [a]):
        return True
    return _segments_overlap(tuple(a.split("/")), tuple(b.split("/")), not _has_wild(a), not _has_wild(b))


def _segments_overlap(a: tuple[str, ...], b: tuple[str, ...], a_dir: bool, b_dir: bool) -> bool:
    """Segment-wise glob intersection; ``*_dir``: that pattern is literal, so it covers its subtree."""
    if not a or not b:
        rest, covers = (b, a_dir) if not a else (a, b_dir)
        return covers or all(seg == "**" for seg in rest)
    if a[0] == "**":
        return _segments_overlap(a[1:], b, a_dir, b_dir) or _segments_overlap(a, b[1:], a_dir, b_dir)
    if b[0] == "**":
        return _segments_overlap(a, b[1:], a_dir, b_dir) or _segments_overlap(a[1:], b, a_dir, b_dir)
    return _segment_overlap(a[0], b[0]) and _segments_overlap(a[1:], b[1:], a_dir, b_dir)


def _has_wild(text: str) -> bool:
    return "*" in text or "?" in text


def _segment_overlap(a: str, b: str) -> bool:
    if not _has_wild(a) and not _has_wild(b):
        return a == b
    if not _has_wild(a):
        return re.fullmatch(glob_to_regex(b), a) is not None
    if not _has_wild(b):
        return re.fullmatch(glob_to_regex(a), b) is not None
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    sa, sb = _literal_prefix(a[::-1]), _literal_prefix(b[::-1])
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.startswith(sb) or sb.startswith(sa))


def _literal_prefix(text: str) -> str:
    match = re.match(r"[^*?]*", text)
    return match.group(0) if match else ""

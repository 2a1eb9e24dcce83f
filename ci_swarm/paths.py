"""Path and glob rules of a plan: whether two ``paths`` globs may overlap, which concurrent subtasks own
overlapping paths (a warning, not an error: the merge queue resolves such edits hunk by hunk), how to
serialize them, and which paths an edit may name. Pure; overlap is found through an index of globs by
literal prefix, not by comparing all pairs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from ci_swarm.dag import Reach, deps_of
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
    """``(a, b, patterns)`` for each concurrent pair (plan order) whose ``paths`` globs may overlap.

    No all-pairs work: globs are indexed by their literal prefix (:class:`GlobIndex`), so only globs of
    which one's literal prefix starts the other's are compared, and only pairs with a common
    glob are asked whether they may run at the same time (:class:`ci_swarm.dag.Reach`). A sharded plan's
    exact file lists share no prefix, so its shards are known disjoint without a single comparison."""
    position = {sub.id: i for i, sub in enumerate(plan.subtasks)}
    index = GlobIndex()
    for sub in plan.subtasks:
        for k, pattern in enumerate(sub.paths):
            index.add(pattern, (position[sub.id], k))
    hits: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for (ia, ka), (ib, kb) in index.candidate_pairs():
        if ia == ib:
            continue
        if ia > ib:
            (ia, ka), (ib, kb) = (ib, kb), (ia, ka)
        a, b = plan.subtasks[ia], plan.subtasks[ib]
        if globs_may_overlap(a.paths[ka], b.paths[kb]):
            hits.setdefault((ia, ib), set()).add((ka, kb))
    reach = Reach(deps_of(plan), [s.id for s in plan.subtasks])
    found = []
    for ia, ib in sorted(hits):
        a, b = plan.subtasks[ia], plan.subtasks[ib]
        if reach.concurrent(a.id, b.id):
            found.append((a.id, b.id, _labels(a.paths, b.paths, sorted(hits[(ia, ib)]))))
    return tuple(found)


class GlobIndex:
    """Globs filed under their literal prefix: the text before the first wildcard (``src/app/test_*.py``
    under ``src/app/test_``; a glob without wildcards under itself, since it also covers its subtree). Every
    path two globs both match starts with both prefixes, and :func:`globs_may_overlap` never says yes
    otherwise, so only globs of which one's prefix starts the other's can overlap. ``candidate_pairs``
    finds those in the sorted prefixes (each prefix's extensions follow it contiguously): no pair of
    unrelated directories or files is formed. The candidates are a superset of the overlapping pairs;
    :func:`globs_may_overlap` decides."""

    def __init__(self) -> None:
        self._keys: dict[str, list[tuple[int, int]]] = {}

    def add(self, pattern: str, key: tuple[int, int]) -> None:
        self._keys.setdefault(literal_prefix(pattern), []).append(key)

    def candidate_pairs(self) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
        """Each unordered pair of keys whose globs' prefixes are equal or one starts the other (once)."""
        prefixes = sorted(self._keys)
        for i, prefix in enumerate(prefixes):
            here = self._keys[prefix]
            for k, key in enumerate(here):
                for other in here[k + 1 :]:
                    yield key, other
            j = i + 1
            while j < len(prefixes) and prefixes[j].startswith(prefix):
                for key in here:
                    for other in self._keys[prefixes[j]]:
                        yield key, other
                j += 1


def literal_prefix(pattern: str) -> str:
    """The text of a glob before its first wildcard (all of a literal path), without leading or trailing
    slashes."""
    return _literal_prefix(pattern.strip("/"))


def overlap_warning(a: str, b: str, patterns: Sequence[str]) -> str:
    return (
        f"subtasks {a!r} and {b!r} may run at the same time and both own {', '.join(patterns)}: "
        "the merge queue will resolve their edits hunk by hunk (or use --serialize-overlaps)"
    )


def serialize_overlaps(plan: Plan) -> Plan:
    """Add ``depends_on`` edges (later in plan order waits for earlier) between overlapping concurrent
    subtasks, re-checking concurrency after each edge so no cycle can appear."""
    deps = {s.id: list(s.depends_on) for s in plan.subtasks}
    position = {s.id: i for i, s in enumerate(plan.subtasks)}
    reach = Reach(deps, list(position))
    pairs = sorted(
        ((a, b) for a, b, _ in ownership_overlaps(plan)),
        key=lambda p: (position[p[1]], -position[p[0]]),
    )
    for a, b in pairs:  # nearest earlier subtask first: a chain, not a fan of redundant edges
        if reach.concurrent(a, b):
            deps[b].append(a)
            reach.add_edge(b, a)
    subtasks = tuple(replace(s, depends_on=tuple(deps[s.id])) for s in plan.subtasks)
    return replace(plan, subtasks=subtasks)


def _labels(a: Sequence[str], b: Sequence[str], hits: Iterable[tuple[int, int]]) -> tuple[str, ...]:
    out: list[str] = []
    for ka, kb in hits:
        pa, pb = a[ka], b[kb]
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
        return _segment_regex(b).fullmatch(a) is not None
    if not _has_wild(b):
        return _segment_regex(a).fullmatch(b) is not None
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    sa, sb = _literal_prefix(a[::-1]), _literal_prefix(b[::-1])
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.startswith(sb) or sb.startswith(sa))


@functools.lru_cache(maxsize=4096)
def _segment_regex(glob: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(glob))


def _literal_prefix(text: str) -> str:
    match = re.match(r"[^*?]*", text)
    return match.group(0) if match else ""

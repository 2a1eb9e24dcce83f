"""The fan-out's job matrix: a plan's waves (:func:`ci_swarm.dag.waves`) as GitHub Actions matrices.

A wave's subtasks become ``{"include": [{"subtask": "<id>"}, …]}``, cut into chunks of at most
:data:`MAX_JOBS` entries (GitHub runs at most 256 jobs per matrix): ``matrix_0``, ``matrix_1``, … one per
chunk, ``matrix`` the first. :func:`output_lines` are the ``key=value`` lines ``plan --fan-out`` writes to
``$GITHUB_OUTPUT``: ``run_id``, ``matrix``, every ``matrix_<i>`` (also when there is one chunk),
``chunks`` and ``waves``; :func:`key_lines` formats the other outputs (``wave``, ``done``, the budget
shares, the usage) the same way. Values are compact JSON on one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ci_swarm.dag import waves
from ci_swarm.models import Plan

MAX_JOBS = 256  # GitHub's limit of jobs per matrix


@dataclass(frozen=True)
class Matrix:
    """One wave's matrix chunks (each at most ``MAX_JOBS`` subtasks) and the plan's number of waves."""

    chunks: tuple[tuple[str, ...], ...]
    waves: int

    @property
    def first(self) -> tuple[str, ...]:
        return self.chunks[0] if self.chunks else ()


def chunked(ids: Sequence[str], size: int = MAX_JOBS) -> tuple[tuple[str, ...], ...]:
    """``ids`` in order, cut into runs of at most ``size``."""
    return tuple(tuple(ids[i : i + size]) for i in range(0, len(ids), size))


def wave_matrix(plan: Plan, wave: int = 0, size: int = MAX_JOBS) -> Matrix:
    """Wave ``wave`` (0: the first, the subtasks without dependencies) of ``plan`` as matrix chunks."""
    all_waves = waves(plan)
    return Matrix(chunked(all_waves[wave], size), len(all_waves))


def include(ids: Sequence[str]) -> str:
    """A matrix in compact JSON: ``{"include":[{"subtask":"a"},…]}``."""
    return json.dumps({"include": [{"subtask": sub} for sub in ids]}, separators=(",", ":"))


def output_lines(run_id: str, matrix: Matrix) -> tuple[str, ...]:
    """The ``key=value`` lines for ``$GITHUB_OUTPUT``; ValueError if a value would span lines."""
    pairs = [("run_id", run_id), ("matrix", include(matrix.first))]
    pairs += [(f"matrix_{i}", include(chunk)) for i, chunk in enumerate(matrix.chunks)]
    pairs += [("chunks", str(len(matrix.chunks))), ("waves", str(matrix.waves))]
    return key_lines(pairs)


def key_lines(pairs: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """``key=value`` lines; ValueError if a value would span lines."""
    for key, value in pairs:
        if "\n" in value or "\r" in value:
            raise ValueError(f"output {key} would span lines")
    return tuple(f"{key}={value}" for key, value in pairs)

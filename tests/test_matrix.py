"""The fan-out matrix: a wave cut into chunks of at most 256 jobs, the key=value output lines."""

from __future__ import annotations

import json

import pytest

from ci_swarm.matrix import MAX_JOBS, Matrix, chunked, include, output_lines, wave_matrix
from tests.helpers import plan_of, scripted


def _wide(n: int) -> Matrix:
    return wave_matrix(plan_of(*[scripted(f"s{i:03d}") for i in range(n)]))


@pytest.mark.parametrize(("n", "sizes"), [(1, [1]), (256, [256]), (257, [256, 1]), (600, [256, 256, 88])])
def test_a_wave_is_cut_into_chunks_of_at_most_256_in_plan_order(n: int, sizes: list[int]) -> None:
    matrix = _wide(n)
    assert [len(chunk) for chunk in matrix.chunks] == sizes
    assert [sub for chunk in matrix.chunks for sub in chunk] == [f"s{i:03d}" for i in range(n)]
    assert matrix.waves == 1 and MAX_JOBS == 256


def test_later_waves_wait_for_their_dependencies() -> None:
    plan = plan_of(
        scripted("a"), scripted("b"), scripted("c", depends_on=("a",)), scripted("d", depends_on=("c",))
    )
    assert wave_matrix(plan) == Matrix((("a", "b"),), 3)
    assert wave_matrix(plan, 1).first == ("c",)
    assert wave_matrix(plan, 2).first == ("d",)


def test_the_output_lines_carry_every_chunk_and_the_first_as_matrix() -> None:
    lines = output_lines("r1", _wide(257))
    pairs = dict(line.split("=", 1) for line in lines)
    assert list(pairs) == ["run_id", "matrix", "matrix_0", "matrix_1", "chunks", "waves"]
    assert pairs["run_id"] == "r1" and pairs["chunks"] == "2" and pairs["waves"] == "1"
    assert pairs["matrix"] == pairs["matrix_0"]
    assert json.loads(pairs["matrix_1"]) == {"include": [{"subtask": "s256"}]}
    assert all("\n" not in line for line in lines)


def test_a_value_never_spans_lines_even_for_an_id_with_a_newline() -> None:
    assert "\n" not in include(["a\nb"])  # compact JSON escapes it
    with pytest.raises(ValueError, match="run_id would span lines"):
        output_lines("r\n1", Matrix((("a",),), 1))


def test_chunked_keeps_order_and_an_empty_list_has_no_chunk() -> None:
    assert chunked(["a", "b", "c"], 2) == (("a", "b"), ("c",))
    assert chunked([], 2) == ()

"""The pure diff3 module, without git: parsing merge-file output, choosing sides, lines and binary content."""

from __future__ import annotations

import pytest

from ci_swarm.diff3 import (
    BINARY_PROBE,
    Block,
    Segment,
    assemble,
    count_lines,
    decode,
    fix_eof,
    is_binary,
    is_conflict,
    is_insert_insert,
    joined,
    kept,
    parse_diff3,
    split_lines,
    text_lines,
)

LABELS = ("o", "b", "t")


def merged(*parts: bytes | tuple[bytes, bytes, bytes], size: int = 5, crlf: bool = False) -> bytes:
    """merge-file --diff3 output: clean text as is, a (ours, base, theirs) tuple as a marked block."""
    end = b"\r\n" if crlf else b"\n"
    out = b""
    for part in parts:
        if isinstance(part, bytes):
            out += part
            continue
        ours, base, theirs = part
        out += b"<" * size + b" o" + end + ours + b"|" * size + b" b" + end + base
        out += b"=" * size + end + theirs + b">" * size + b" t" + end
    return out


# --- parse_diff3 ----------------------------------------------------------------------------------


def test_parse_splits_clean_text_and_blocks_in_order() -> None:
    data = merged(b"a\n", (b"O\n", b"B\n", b"T\n"), b"m\n", (b"", b"x\n", b"X\n"), b"z\n")
    assert parse_diff3(data, LABELS, 5) == [
        b"a\n",
        Block(b"O\n", b"B\n", b"T\n"),
        b"m\n",
        Block(b"", b"x\n", b"X\n"),
        b"z\n",
    ]


def test_parse_a_file_that_is_one_block_has_no_clean_segments() -> None:
    assert parse_diff3(merged((b"1\n2\n", b"", b"3\n")), LABELS, 5) == [Block(b"1\n2\n", b"", b"3\n")]


def test_parse_without_markers_is_one_clean_segment_and_empty_input_none() -> None:
    assert parse_diff3(b"just\ntext", LABELS, 5) == [b"just\ntext"]
    assert parse_diff3(b"", LABELS, 5) == []


def test_parse_accepts_crlf_markers_and_keeps_content_endings() -> None:
    data = merged(b"a\r\n", (b"O\r\n", b"B\r\n", b"T\r\n"), crlf=True)
    assert parse_diff3(data, LABELS, 5) == [b"a\r\n", Block(b"O\r\n", b"B\r\n", b"T\r\n")]


def test_parse_only_recognises_markers_of_the_given_size_and_labels() -> None:
    narrow = merged((b"O\n", b"B\n", b"T\n"), size=4)
    assert parse_diff3(narrow, LABELS, 5) == [narrow]  # content, not markers
    other_label = merged((b"O\n", b"B\n", b"T\n")).replace(b"<<<<< o", b"<<<<< x")
    assert parse_diff3(other_label, LABELS, 5) is None  # a stray separator without a start


@pytest.mark.parametrize(
    "data",
    [
        b"<<<<< o\nA\n",  # unterminated
        b"<<<<< o\nA\n===== \nC\n>>>>> t\n",  # separator with a trailing blank is content: no end state
        b"<<<<< o\nA\n||||| b\nB\n>>>>> t\n",  # base without separator
        b"<<<<< o\nA\n<<<<< o\n",  # nested start
        b">>>>> t\n",  # end without start
        b"||||| b\n",  # base marker outside a block
    ],
)
def test_parse_refuses_ambiguous_marker_sequences(data: bytes) -> None:
    assert parse_diff3(data, LABELS, 5) is None


# --- fix_eof --------------------------------------------------------------------------------------


def test_fix_eof_restores_missing_final_newlines_of_a_last_block() -> None:
    segments: list[Segment] = [b"a\n", Block(b"O\n", b"B\n", b"T\n")]
    originals = Block(b"a\nO", b"a\nB\n", b"a\nT")
    assert fix_eof(segments, originals) == [b"a\n", Block(b"O", b"B\n", b"T")]


def test_fix_eof_leaves_clean_endings_and_empty_sides_alone() -> None:
    clean: list[Segment] = [Block(b"O\n", b"", b"T\n"), b"z"]
    assert fix_eof(clean, Block(b"O\nz", b"z", b"T\nz")) == clean
    deleted: list[Segment] = [Block(b"", b"B\n", b"T\n")]
    assert fix_eof(deleted, Block(b"", b"B", b"T")) == [Block(b"", b"B", b"T")]
    assert fix_eof([], Block(b"", b"", b"")) == []


# --- choosing a side and assembling ---------------------------------------------------------------


def test_is_conflict_only_for_blocks_whose_sides_differ() -> None:
    assert is_conflict(Block(b"O\n", b"B\n", b"T\n"))
    assert not is_conflict(Block(b"S\n", b"B\n", b"S\n"))
    assert not is_conflict(b"text\n")


def test_kept_picks_the_side_and_passes_clean_text_through() -> None:
    block = Block(b"O\n", b"B\n", b"T\n")
    assert kept(block, True) == b"O\n"
    assert kept(block, False) == b"T\n"
    assert kept(b"clean\n", False) == b"clean\n"


def test_assemble_joins_the_chosen_sides_with_their_line_spans() -> None:
    segments: list[Segment] = [
        b"a\nb\n",
        Block(b"O1\nO2\n", b"B\n", b"T\n"),
        b"c\n",
        Block(b"O\n", b"", b"T\n"),
    ]
    text, spans = assemble(segments, [True, True, True, False])
    assert text == b"a\nb\nO1\nO2\nc\nT\n"
    assert spans == [(1, 2), (3, 4), (5, 5), (6, 6)]


def test_assemble_anchors_an_empty_kept_side_on_the_line_before() -> None:
    segments: list[Segment] = [b"a\nb\n", Block(b"", b"B\n", b"T\n"), b"c\n"]
    text, spans = assemble(segments, [True, True, True])
    assert text == b"a\nb\nc\n"
    assert spans[1] == (2, 2)


def test_assemble_anchors_at_the_top_and_in_an_empty_file() -> None:
    top: list[Segment] = [Block(b"", b"B\n", b"T\n"), b"rest\n"]
    assert assemble(top, [True, True])[1] == [(1, 1), (1, 1)]
    empty: list[Segment] = [Block(b"", b"B\n", b"T\n")]
    assert assemble(empty, [True]) == (b"", [(0, 0)])


def test_insert_insert_is_an_empty_base_with_two_different_non_empty_sides() -> None:
    assert is_insert_insert(Block(b"O\n", b"", b"T\n"))
    assert not is_insert_insert(Block(b"O\n", b"B\n", b"T\n"))  # a replacement, not an insertion
    assert not is_insert_insert(Block(b"", b"", b"T\n"))  # one side inserts nothing
    assert not is_insert_insert(Block(b"O\n", b"", b""))
    assert not is_insert_insert(Block(b"S\n", b"", b"S\n"))  # the same insertion: nothing to join
    assert not is_insert_insert(b"clean\n")


def test_joined_puts_ours_first_then_theirs() -> None:
    assert joined(Block(b"O1\nO2\n", b"", b"T\n")) == b"O1\nO2\nT\n"
    assert kept(Block(b"O\n", b"", b"T\n"), None) == b"O\nT\n"


def test_joined_separates_a_last_line_without_newline() -> None:
    assert joined(Block(b"O", b"", b"T")) == b"O\nT"
    assert joined(Block(b"O", b"", b"T\n")) == b"O\nT\n"


def test_assemble_lands_both_sides_of_a_joined_block_with_their_span() -> None:
    segments: list[Segment] = [b"a\n", Block(b"O\n", b"", b"T1\nT2\n"), b"z\n"]
    text, spans = assemble(segments, [True, None, True])
    assert text == b"a\nO\nT1\nT2\nz\n"
    assert spans == [(1, 1), (2, 4), (5, 5)]


def test_assemble_needs_one_choice_per_segment() -> None:
    with pytest.raises(ValueError, match="shorter"):
        assemble([b"a\n", Block(b"O\n", b"B\n", b"T\n")], [True])


# --- lines and binary content -------------------------------------------------------------------


def test_split_lines_splits_on_lf_only_and_keeps_endings() -> None:
    assert split_lines(b"a\r\nb\rc\nlast") == [b"a\r\n", b"b\rc\n", b"last"]
    assert split_lines(b"a\n") == [b"a\n"]
    assert split_lines(b"") == []


@pytest.mark.parametrize(("data", "n"), [(b"", 0), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"\n\n", 2)])
def test_count_lines_counts_a_last_line_without_newline(data: bytes, n: int) -> None:
    assert count_lines(data) == n
    assert count_lines(data) == len(split_lines(data))


def test_text_lines_round_trip_invalid_utf8() -> None:
    data = b"caf\xe9\nok\n"
    assert text_lines(data) == ["caf\udce9\n", "ok\n"]
    assert "".join(text_lines(data)).encode("utf-8", "surrogateescape") == data


def test_is_binary_looks_for_nul_in_the_probe_only() -> None:
    assert is_binary(b"a\0b")
    assert not is_binary(b"plain text\n")
    assert not is_binary(b"x" * BINARY_PROBE + b"\0")
    assert is_binary(b"x" * (BINARY_PROBE - 1) + b"\0")


def test_decode_replaces_invalid_utf8() -> None:
    assert decode(b"caf\xe9") == "caf\ufffd"
    assert decode("café".encode()) == "café"

"""Pure diff3: ``git merge-file --diff3`` output as clean text and conflict blocks, one side kept per block.

Everything here is a function over bytes (no git, no I/O), so it is unit-tested directly:

* :func:`parse_diff3` splits the merged output (markers :data:`MARKER_SIZE` wide, labelled with a nonce)
  into clean text (``bytes``) and :class:`Block` s (ours, base, theirs); :func:`fix_eof` gives the last
  block back each file's own ending (merge-file ends every side of a final conflict with a newline).
* :func:`is_conflict` / :func:`kept` / :func:`assemble` choose a side per block (or, for an insert/insert
  block — :func:`is_insert_insert` — both sides joined in merge order, :func:`joined`) and rebuild the file
  with, for each segment, the 1-based inclusive line span of the text kept.
* :func:`split_lines`, :func:`count_lines`, :func:`text_lines`, :func:`is_binary`, :func:`decode` see lines
  and binary content as git does (lines split on LF only; binary = a NUL in the first 8000 bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MARKER_SIZE = 61  # wide markers: a content line never looks like one
BINARY_PROBE = 8000  # git's buffer_is_binary: a NUL in the first 8000 bytes


@dataclass(frozen=True)
class Block:
    """One conflicting region of a diff3 merge: each side's text (whole lines, with their endings)."""

    ours: bytes
    base: bytes
    theirs: bytes


Segment = bytes | Block


def parse_diff3(data: bytes, labels: tuple[str, str, str], size: int) -> list[Segment] | None:
    """Split ``merge-file --diff3`` output into clean text and conflict blocks; None if ambiguous."""
    start, mid, end = (f"{c * size} {label}".encode() for c, label in zip("<|>", labels, strict=True))
    markers = {start: 0, mid: 1, b"=" * size: 2, end: 3}
    segments: list[Segment] = []
    parts: list[list[bytes]] = [[]]
    for line in split_lines(data):
        marker = markers.get(_bare(line))
        state = len(parts) - 1  # 0: clean, 1: ours, 2: base, 3: theirs
        if marker is None:
            parts[-1].append(line)
        elif marker == 0 and state == 0:
            if parts[0]:
                segments.append(b"".join(parts[0]))
            parts = [[], []]
        elif marker == state and state in (1, 2):
            parts.append([])
        elif marker == 3 and state == 3:
            segments.append(Block(*(b"".join(p) for p in parts[1:])))
            parts = [[]]
        else:
            return None
    if len(parts) != 1:
        return None
    if parts[0]:
        segments.append(b"".join(parts[0]))
    return segments


def fix_eof(segments: list[Segment], originals: Block) -> list[Segment]:
    """merge-file ends every side of a final conflict with a newline; give back each file's own ending."""
    if not segments or not isinstance(segments[-1], Block):
        return segments
    last = segments[-1]
    fixed = Block(
        _restore_tail(last.ours, originals.ours),
        _restore_tail(last.base, originals.base),
        _restore_tail(last.theirs, originals.theirs),
    )
    return [*segments[:-1], fixed]


def is_conflict(segment: Segment) -> bool:
    """True for a block whose two sides differ (a choice must be made and the other side recorded)."""
    return isinstance(segment, Block) and segment.ours != segment.theirs


def is_insert_insert(segment: Segment) -> bool:
    """True for a conflicting block where both sides only insert at one point (its base text is empty)."""
    if not isinstance(segment, Block) or segment.base or not segment.ours or not segment.theirs:
        return False
    return segment.ours != segment.theirs


def joined(block: Block) -> bytes:
    """Both sides of ``block`` in merge order: ours (already on the integration branch), then theirs.

    When ours is a file's last line without a newline, a newline separates it from theirs (the joined text
    then ends as theirs does)."""
    if block.ours and block.theirs and not block.ours.endswith(b"\n"):
        return block.ours + b"\n" + block.theirs
    return block.ours + block.theirs


def kept(segment: Segment, ours: bool | None) -> bytes:
    """The text that lands for ``segment``: clean text as is, a block's ours (``True``) or theirs
    (``False``) side, or both joined (``None``, :func:`joined`)."""
    if isinstance(segment, bytes):
        return segment
    if ours is None:
        return joined(segment)
    return segment.ours if ours else segment.theirs


def assemble(segments: Sequence[Segment], ours: Sequence[bool | None]) -> tuple[bytes, list[tuple[int, int]]]:
    """The resolved file, and for each segment the 1-based inclusive line span of the text kept.

    ``ours[i]`` says what lands for segment ``i`` (ignored for clean text): its ours side (``True``), its
    theirs side (``False``) or both joined (``None``). An empty piece (a deletion won) is anchored on the
    line before it: ``(n, n)``, ``(1, 1)`` at the top, ``(0, 0)`` in an empty file.
    """
    pieces = [kept(seg, keep) for seg, keep in zip(segments, ours, strict=True)]
    total = sum(count_lines(p) for p in pieces)
    spans, done = [], 0
    for piece in pieces:
        n = count_lines(piece)
        if n:
            spans.append((done + 1, done + n))
        else:
            anchor = done or (1 if total else 0)
            spans.append((anchor, anchor))
        done += n
    return b"".join(pieces), spans


def split_lines(data: bytes) -> list[bytes]:
    """Lines as git sees them (split on LF only), each keeping its ending."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def count_lines(data: bytes) -> int:
    """Number of lines, counting a last line without a newline."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def text_lines(data: bytes) -> list[str]:
    """:func:`split_lines` decoded losslessly (``surrogateescape``), for comparing lines as text."""
    return [line.decode("utf-8", "surrogateescape") for line in split_lines(data)]


def is_binary(data: bytes) -> bool:
    """Binary as git decides it: a NUL byte in the first :data:`BINARY_PROBE` bytes."""
    return b"\0" in data[:BINARY_PROBE]


def decode(data: bytes) -> str:
    """Text for a report (invalid UTF-8 replaced)."""
    return data.decode("utf-8", "replace")


def _restore_tail(side: bytes, original: bytes) -> bytes:
    if not side or not original or original.endswith(b"\n"):
        return side
    tail = original[original.rfind(b"\n") + 1 :]
    lines = split_lines(side)
    return b"".join(lines[:-1]) + tail if lines[-1].startswith(tail) else side


def _bare(line: bytes) -> bytes:
    line = line[:-1] if line.endswith(b"\n") else line
    return line[:-1] if line.endswith(b"\r") else line

"""Text edits that keep a file's bytes: its line endings and any bytes that are not UTF-8.

Files are edited as the exact text of their bytes (:func:`decode`: UTF-8 with ``surrogateescape``, no
newline translation, so :func:`encode` gives every untouched byte back). An edit's ``old`` text matches
whatever the file's line endings are: ``\\n`` in ``old`` matches ``\\r\\n`` in the file (agents and plans
write ``\\n``). Line breaks in the new text take the style of the line being edited (``replace``) or of the
file's last line (``append``); every other line keeps its own ending, so a CRLF or mixed file changes only
where it was edited. A file without any line break keeps the new text as given.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

CRLF = "\r\n"


def decode(data: bytes) -> str:
    """The exact text of a file's bytes (undecodable bytes kept as surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    """The bytes of text made by :func:`decode` (and edits of it)."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Span:
    """Where a match lies in the file's exact text: ``text[start:end]``."""

    start: int
    end: int


def find(text: str, old: str) -> tuple[Span, ...]:
    """The non-overlapping places ``old`` matches in ``text``, a CRLF in either one matching a LF in the
    other; the exact matches when only an exact match exists (an ``old`` ending in a bare ``\\r``)."""
    norm_old = old.replace(CRLF, "\n")
    norm = text.replace(CRLF, "\n")
    crlf_at = _crlf_positions(text)
    spans = tuple(
        Span(start + bisect_left(crlf_at, start), end + bisect_left(crlf_at, end))
        for start, end in _occurrences(norm, norm_old)
    )
    return spans or tuple(Span(s, e) for s, e in _occurrences(text, old))


def replace(text: str, span: Span, new: str) -> str:
    """``text`` with ``span`` replaced by ``new``, whose line breaks take the edited line's style."""
    return text[: span.start] + restyle(new, newline_at(text, span.start)) + text[span.end :]


def append(text: str, addition: str) -> str:
    """``text`` followed by ``addition``, whose line breaks take the style of the file's last line break."""
    last = text.rfind("\n")
    return text + restyle(addition, _style(text, last) if last >= 0 else None)


def newline_at(text: str, pos: int) -> str | None:
    """The line break ending the line at ``pos`` (the file's last one when that line has none), or None
    when the text has no line break at all."""
    after = text.find("\n", pos)
    at = after if after >= 0 else text.rfind("\n", 0, pos)
    return _style(text, at) if at >= 0 else None


def restyle(new: str, newline: str | None) -> str:
    """``new`` with every line break (LF or CRLF) written as ``newline``; unchanged when None."""
    if newline is None or "\n" not in new:
        return new
    return new.replace(CRLF, "\n").replace("\n", newline)


def _style(text: str, lf: int) -> str:
    return CRLF if lf > 0 and text[lf - 1] == "\r" else "\n"


def _crlf_positions(text: str) -> list[int]:
    """For each CRLF of ``text``, the index of its LF once every CRLF before it became a LF."""
    out: list[int] = []
    at = text.find(CRLF)
    while at >= 0:
        out.append(at - len(out))
        at = text.find(CRLF, at + 2)
    return out


def _occurrences(haystack: str, needle: str) -> list[tuple[int, int]]:
    if not needle:
        return []
    found = []
    at = haystack.find(needle)
    while at >= 0:
        found.append((at, at + len(needle)))
        at = haystack.find(needle, at + len(needle))
    return found

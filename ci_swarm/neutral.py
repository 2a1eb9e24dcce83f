"""Neutralise untrusted text before it lands on a Markdown surface (PR title and body, comments, reviews,
job summary, the Markdown report).

Untrusted text is anything ci-swarm did not write itself: issue titles and bodies, subtask titles, roles and
instructions (from a plan or the model), agent output, failure reasons, file names from agent branches.
Every surface builds its Markdown from these pure functions, each for one place in a document:

* :func:`plain` — one line of plain text (a PR title: GitHub renders no Markdown there);
* :func:`inline` — one line of Markdown text (list items, headings' tails, paragraphs);
* :func:`cell` / :func:`code_cell` — one table cell, as text or as code;
* :func:`block` — several lines of Markdown text;
* :func:`code_span` / :func:`fence` — text shown as code, verbatim but for invisible characters;
* :func:`clip` — our own Markdown cut to a size with every fence and ``<details>`` it opened closed again.

What they apply:

* **Invisible and bidirectional controls** are stripped (U+200B, U+200E/F, U+202A–E, U+2066–9, U+061C,
  U+FEFF, other format and control characters), so text cannot hide or reorder what a reviewer reads.
  Zero-width (non-)joiners are kept between two non-ASCII letters, where emoji and scripts need them.
* **Mentions** (``@user``, ``@org/team``): a WORD JOINER (U+2060) goes right after the ``@``. GitHub links a
  mention only when a letter or digit follows the ``@``; the joiner is neither, renders as nothing and is
  not whitespace, so the text reads the same but pings nobody. (A backslash or ``&#64;`` would not do: they
  are decoded before GitHub looks for mentions.)
* **Closing keywords** (``close[sd]``, ``fix(e[sd])``, ``resolve[sd]``, any case) followed by issue
  references (``#N``, ``owner/repo#N``, ``GH-N``, issue and pull URLs, lists of them): each reference gets a
  WORD JOINER after its ``#`` (``GH-``; after ``:`` in a URL), so it is no reference at all: no link, no
  close. Bare references stay live (a cross-reference is harmless); the only live ``Closes #N`` on a PR is
  the one ci-swarm writes for the request.
* **HTML**: ``&``, ``<``, ``>`` become entities, so untrusted text opens no tag, comment or ``<details>``.
* **Markdown**: the inline-active characters (``\\ ` * _ [ ] ~ $ |``) are backslash-escaped, so untrusted
  text opens no code span, emphasis, link or image that could pair with our own markup; at the start of a
  line, block markers (``#``, ``>``, ``-``, ``+``, ``=``, ``|``, ``1.``/``1)``) are escaped and leading
  indentation dropped, so it starts no heading, quote, list, table, fence or indented code. One-line forms
  fold every line break (CR, LF, U+2028/9, NEL) into a space.
* **Code**: a code span or fence uses a backtick run longer than any in the content (a span is padded when
  the content starts or ends with a backtick), so the content cannot end it early; the content itself is
  verbatim (mentions and references in code are not linked by GitHub).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD_JOINER = "\u2060"

_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029\x85]")
# stripped everywhere: bidi embeddings/overrides/isolates/marks, zero-width space, BOM, other format chars,
# C0 controls but tab and newline, DEL and C1 controls
_INVISIBLE = re.compile(
    "[\u200b\u200e\u200f\u202a-\u202e\u2061-\u2064\u2066-\u206f\u061c\u180e\ufeff\ufff9-\ufffb"
    "\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
# zero-width non-joiner / joiner: kept only between two non-ASCII, non-space characters (emoji, scripts)
_JOINER = re.compile(r"(?<![^\x00-\x7f\s])[\u200c\u200d]|[\u200c\u200d](?![^\x00-\x7f\s])")
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_REF = r"(?:(?:[\w.-]+/[\w.-]+)?#\d+|GH-\d+|https?://\S+?/(?:issues|pull)/\d+)"
_CLOSING = re.compile(
    rf"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b\s*:?\s*{_REF}(?:\s*(?:,|\band\b|&)?\s*{_REF})*",
    re.IGNORECASE,
)
_REF_MARK = re.compile(r"(?<=#)(?=\d)|(?<=GH-)(?=\d)|(?<=https:)(?=//)|(?<=http:)(?=//)", re.IGNORECASE)
_ESCAPES = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "_": "\\_",
    "[": "\\[",
    "]": "\\]",
    "~": "\\~",
    "$": "\\$",
    "|": "\\|",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
}
_ESCAPE = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")
_BLOCK_START = re.compile(r"[#+=-]|\d+(?=[.)])")
_FENCE_INFO = re.compile(r"[^\w+.#-]")
_FENCE_LINE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


# --- the rules -------------------------------------------------------------------------------------


def clean(text: str) -> str:
    """Line breaks as ``\\n``; invisible, bidirectional and control characters removed (tabs kept)."""
    text = _LINE_BREAKS.sub("\n", text)
    return _JOINER.sub("", _INVISIBLE.sub("", text))


def defuse(text: str) -> str:
    """Mentions and closing references made inert (a WORD JOINER each); nothing else changes."""
    text = _CLOSING.sub(lambda m: _REF_MARK.sub(WORD_JOINER, m.group(0)), text)
    return _MENTION.sub("@" + WORD_JOINER, text)


def _escape(text: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], text)


def _line(text: str) -> str:
    """One line of untrusted text as Markdown text: escaped, and starting no block."""
    text = _escape(defuse(text.replace("\t", " ").strip()))
    start = _BLOCK_START.match(text)
    if start is None:
        return text
    if start.group(0)[0].isdigit():  # "1." / "1)": escape the delimiter after the number
        end = start.end()
        return f"{text[:end]}\\{text[end:]}"
    return "\\" + text


def _one_line(text: str) -> str:
    return " ".join(clean(text).split("\n"))


# --- text ------------------------------------------------------------------------------------------


def plain(text: str) -> str:
    """One line of plain text (a PR or issue title): cleaned, folded, no mention or closing reference."""
    return " ".join(defuse(_one_line(text)).split())


def inline(text: str) -> str:
    """One line of Markdown text: every rule above, line breaks folded into spaces."""
    return _line(_one_line(text))


def block(text: str) -> str:
    """Several lines of Markdown text: each line as :func:`inline`; runs of blank lines become one."""
    lines = [_line(line) for line in clean(text).split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


def cell(text: str) -> str:
    """One GFM table cell of text. :func:`inline` escapes ``|`` already (``\\|`` renders as ``|`` in a
    paragraph too), so a cell is exactly an inline text; the name says where it is used."""
    return inline(text)


# --- code ------------------------------------------------------------------------------------------


def _longest_run(text: str, char: str) -> int:
    return max((len(m) for m in re.findall(f"{re.escape(char)}+", text)), default=0)


def code_span(text: str) -> str:
    """Text as inline code: one line, verbatim, in a backtick run longer than any inside it."""
    body = _one_line(text)
    if not body:
        return "` `"
    ticks = "`" * (_longest_run(body, "`") + 1)
    if body[0] == "`" or body[-1] == "`" or (body[0] == " " and body[-1] == " " and body.strip()):
        body = f" {body} "
    return f"{ticks}{body}{ticks}"


def code_cell(text: str) -> str:
    """Text as inline code in a GFM table cell (``|`` escaped). A GFM table cannot show ``\\|`` inside a
    code span (the cell splitter eats the backslash), so such text falls back to :func:`cell`."""
    if "\\|" in _one_line(text):
        return cell(text)
    return code_span(text).replace("|", "\\|")


def fence(text: str, info: str = "") -> str:
    """Text as a fenced code block: its fence longer than any backtick or tilde run in the text."""
    body = clean(text)
    size = max(3, _longest_run(body, "`") + 1, _longest_run(body, "~") + 1)
    ticks = "`" * size
    if body and not body.endswith("\n"):
        body += "\n"
    return f"{ticks}{_FENCE_INFO.sub('', info)}\n{body}{ticks}"


# --- our own Markdown --------------------------------------------------------------------------------


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A GFM table of finished cells (built with :func:`cell`, :func:`code_cell` or trusted text)."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _closers(markdown: str) -> list[str]:
    """What closes the fences and ``<details>`` that ``markdown`` (our own) leaves open."""
    fence_open: tuple[str, str] | None = None  # (indent, fence)
    details = 0
    for raw in markdown.split("\n"):
        line = raw.lstrip(" ")
        indent = raw[: len(raw) - len(line)]
        found = _FENCE_LINE.match(line)
        if fence_open is not None:
            mark = fence_open[1]
            closing = found and found.group(2)[0] == mark[0] and len(found.group(2)) >= len(mark)
            if closing and found and not found.group(3).strip():
                fence_open = None
            continue
        if found:
            fence_open = (indent, found.group(2))
        elif line.startswith("<details"):
            details += 1
        elif line.startswith("</details>"):
            details = max(0, details - 1)
    closers = [fence_open[0] + fence_open[1]] if fence_open else []
    return closers + ["</details>"] * details


def clip(markdown: str, limit: int, tail: str) -> str:
    """``markdown`` (ours) if it fits in ``limit`` characters; else cut at a line break, every fence and
    ``<details>`` it opened closed again, and ``tail`` after it."""
    if len(markdown) <= limit:
        return markdown
    room = max(0, limit - len(tail) - 200)
    cut = markdown.rfind("\n", 0, room)
    head = markdown[: cut if cut > 0 else room]
    closers = _closers(head)
    return "\n".join([head, *closers, "", tail]) if closers else f"{head}\n\n{tail}"

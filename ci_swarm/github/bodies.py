"""Text someone wrote on GitHub (an issue body, a comment), read the way github.com shows it.

:func:`plan_block` finds a ``swarm-plan`` block only where a reader sees one: a **top-level** fenced code
block (CommonMark, parsed with markdown-it-py). A fence inside an HTML comment, a ``<details>`` (or any HTML
element left open before it), a blockquote or a list item, and indented code, are not plan blocks: text a
maintainer cannot see at a glance never becomes a plan. :func:`task_text` strips invisible and bidirectional
control characters from text that is given to the planner as a task.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

PLAN_INFO = "swarm-plan"
# zero-width space/joiners/marks, bidi embeddings, overrides and isolates, word joiner, BOM
_HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)\b[^>]*?(/?)>")
_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()  # noqa: SIM905
)


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark")


def task_text(text: str) -> str:
    """``text`` without invisible and bidirectional control characters."""
    return _HIDDEN.sub("", text or "")


def plan_block(text: str) -> str:
    """The content of the first visible top-level ```` ```swarm-plan ```` fence in ``text``, or ""."""
    for content in _visible_plan_fences(text or ""):
        return content.replace("\n", "\r\n") if "\r\n" in text else content
    return ""


def has_plan_block(text: str) -> bool:
    return any(True for _ in _visible_plan_fences(text or ""))


def _visible_plan_fences(text: str) -> Iterator[str]:
    depth = 0  # HTML elements opened (and not closed) before this point of the document
    for token in _parser().parse(text):
        if token.type == "html_block":
            depth = max(0, depth + _tag_balance(token.content))
        elif token.type == "inline":
            depth = max(0, depth + sum(_tag_balance(c.content) for c in _html_children(token)))
        elif _is_plan_fence(token) and token.level == 0 and depth == 0:
            yield token.content


def _is_plan_fence(token: Token) -> bool:
    words = token.info.split()
    return token.type == "fence" and bool(words) and words[0] == PLAN_INFO


def _html_children(token: Token) -> Iterator[Token]:
    return (child for child in token.children or () if child.type == "html_inline")


def _tag_balance(html: str) -> int:
    """Elements ``html`` opens minus those it closes (void and self-closed tags, comments: none)."""
    balance = 0
    for closing, name, self_closed in _TAG.findall(_COMMENT.sub("", html)):
        if name.lower() in _VOID or self_closed:
            continue
        balance += -1 if closing else 1
    return balance

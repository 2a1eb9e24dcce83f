"""Every Markdown surface built from a hostile report, rendered by a real GFM renderer (markdown-it-py's
``gfm-like`` preset: tables, strikethrough, autolinks, raw HTML on).

Each surface must render with: no mention GitHub would link, no raw HTML but our own, only our own headings,
tables with their own shape, every fence holding exactly its text, the hostile text still visible, and a
closing keyword only where ci-swarm wrote one (``Closes #7``, once, on the PR body).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from ci_swarm import models as m
from ci_swarm.github.progress import apply, initial_state, render
from ci_swarm.github.publish import pr_body, pr_title
from ci_swarm.github.review import PatchFile, plan_review, review_body
from ci_swarm.neutral import WORD_JOINER
from ci_swarm.ports import ProgressEvent
from ci_swarm.report import to_markdown

HOSTILE = (
    "@octocat @org/team Fixes #1 closes o/r#2 resolves https://github.com/o/r/issues/3 <!-- <details> "
    "```` ~~~ <module> `tick` a|b *x* [l](https://e.example) # h\n::error::boom\n> q\n- item\n\u202eevil"
)
OTHER_SIDE = "```\n~~~\n@octocat Fixes #1 <details>\n"
FILE = "we`ird|<x>@y.py"
MENTION = re.compile(r"(?<![\w`])@(?=[A-Za-z0-9])")
CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b\s*:?\s*(?:(?:[\w.-]+/[\w.-]+)?#\d+|https?://\S+/issues/\d+)",
    re.IGNORECASE,
)
OUR_HTML = {
    "<details><summary>the other side</summary>",
    "</details>",
    "<details><summary>Run report</summary>",
    "<!-- ci-swarm:progress run=r1 -->",
}


def hostile_report() -> m.RunReport:
    sub = {"branch": "swarm/r1-agents/x", "files": (FILE,), "seconds": 1.0}
    ok, failed = m.SubtaskStatus.SUCCEEDED, m.SubtaskStatus.FAILED
    subtasks = (
        m.SubtaskRecord("a", HOSTILE, HOSTILE, ok, started_at=10.0, finished_at=11.0,
                      summary=HOSTILE, outside_paths=(FILE,), **sub),  # type: ignore[arg-type]
        m.SubtaskRecord("section", "title", HOSTILE, failed, started_at=10.5, finished_at=12.0,
                      error=HOSTILE, **sub),  # type: ignore[arg-type]
    )  # fmt: skip
    conflict = m.Conflict(
        FILE, m.ConflictKind.CONTENT, "section", "a", (1, 2), "k\nk\n", OTHER_SIDE, "", HOSTILE
    )
    return m.RunReport(
        run_id="r1",
        task=HOSTILE,
        repo="/repo",
        base="b" * 40,
        integration_branch="swarm/r1",
        integration_commit="c" * 40,
        stats=m.RunStats(2.0, 2.5, 1.2, 1.5, 0.7, 2, 2),
        subtasks=subtasks,
        merges=(
            m.MergeRecord("a", 1, m.MergeStatus.CLEAN, "f" * 40),
            m.MergeRecord("section", 2, m.MergeStatus.CONFLICTED, "9" * 40, (FILE,), (conflict,)),
        ),
        overlap=(m.Overlap("a", "section", FILE, m.OverlapKind.OVERLAPPING),),
        rationale=HOSTILE,
        notes=(HOSTILE,),
        request=m.Request(HOSTILE, "issue", 7, title=HOSTILE),
    )


# --- reading the rendered document ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    tokens: list[Token]

    def walk(self) -> Iterator[Token]:
        for token in self.tokens:
            yield token
            yield from token.children or ()

    def _inline(self, token: Token, kinds: tuple[str, ...]) -> str:
        return "".join(
            " " if c.type in ("softbreak", "hardbreak") else c.content
            for c in token.children or ()
            if c.type in (*kinds, "softbreak", "hardbreak")
        )

    def inline_texts(self) -> list[str]:
        """The visible text of each inline run (paragraph, cell, heading), code left out."""
        return [self._inline(t, ("text",)) for t in self.tokens if t.type == "inline"]

    def visible(self) -> str:
        """All visible text, code included (what a reader sees), word joiners removed."""
        parts = [
            self._inline(t, ("text", "code_inline")) if t.type == "inline" else t.content
            for t in self.tokens
            if t.type in ("inline", "fence", "code_block")
        ]
        return " ".join(parts).replace(WORD_JOINER, "")

    def headings(self) -> list[str]:
        return [
            f"{self.tokens[i].tag} {self.tokens[i + 1].content}"
            for i, t in enumerate(self.tokens)
            if t.type == "heading_open"
        ]

    def fences(self) -> list[tuple[str, str]]:
        return [(t.info, t.content) for t in self.tokens if t.type == "fence"]

    def html(self) -> list[str]:
        return [t.content.strip() for t in self.walk() if t.type in ("html_block", "html_inline")]

    def table_shapes(self) -> list[list[int]]:
        shapes: list[list[int]] = []
        for t in self.tokens:
            if t.type == "table_open":
                shapes.append([])
            elif t.type == "tr_open":
                shapes[-1].append(0)
            elif t.type in ("td_open", "th_open"):
                shapes[-1][-1] += 1
        return shapes


def rendered(markdown: str) -> Rendered:
    return Rendered(MarkdownIt("gfm-like").parse(markdown))


def assert_inert(doc: Rendered, closes: int | None = None) -> None:
    texts = doc.inline_texts()
    assert not [t for t in texts if MENTION.search(t)], "a mention GitHub would link"
    found = [hit.group(0) for t in texts for hit in CLOSING.finditer(t)]
    assert found == ([f"Closes #{closes}"] if closes else [])
    assert set(doc.html()) <= OUR_HTML, doc.html()
    assert not [c for c in doc.walk() if c.type == "image"]
    assert "\u202e" not in doc.visible()


# --- the surfaces ---------------------------------------------------------------------------------------


SECTIONS = ["h3 Subtasks", "h3 Timeline", "h3 Merges", "h3 Overlap", "h3 Conflicts",
            "h3 Writes outside owned paths", "h3 Timing", "h3 Subtask details"]  # fmt: skip


def test_the_markdown_report_and_job_summary() -> None:
    doc = rendered(to_markdown(hostile_report()))
    assert_inert(doc)
    assert doc.headings() == ["h2 ci-swarm run `r1`", *SECTIONS]  # nothing hostile became a heading
    assert doc.table_shapes() == [[7, 7], [8, 8, 8], [6, 6, 6], [4, 4], [2, 2], [2] * 11]
    assert [info for info, _ in doc.fences()] == ["mermaid", ""]
    assert doc.fences()[1][1] == OTHER_SIDE  # the other side, verbatim, in a fence that holds it all
    visible = doc.visible()
    assert HOSTILE.replace("\u202e", "").replace("\n", " ") in visible  # nothing vanished
    assert FILE in visible and "<module>" in visible and "`tick`" in visible


def test_the_pull_request_title_and_body() -> None:
    report = hostile_report()
    title = pr_title(report)
    assert "\n" not in title and not MENTION.search(title) and not CLOSING.search(title)
    doc = rendered(pr_body(report, 7))
    assert_inert(doc, closes=7)
    assert doc.inline_texts()[-1] == "Closes #7"  # ours, live, last
    assert doc.headings() == ["h2 ci-swarm run `r1`", *SECTIONS]


def test_a_clipped_pull_request_body_still_ends_with_our_closes() -> None:
    huge = m.Conflict(FILE, m.ConflictKind.CONTENT, "a", "a", (1, 1), "", "```\n" + "x\n" * 40_000, "", "")
    report = hostile_report()
    report = replace(report, merges=(m.MergeRecord("a", 1, m.MergeStatus.CONFLICTED, "f" * 40, (), (huge,)),))
    body = pr_body(report, 7)
    assert len(body) <= 65_536
    doc = rendered(body)
    assert_inert(doc, closes=7)
    assert doc.inline_texts()[-1] == "Closes #7" and "truncated" in doc.inline_texts()[-2]


def test_the_progress_comment() -> None:
    subs = [m.Subtask("a", HOSTILE, HOSTILE), m.Subtask("section", "title", HOSTILE)]
    state = initial_state("r1", subs)
    state = apply(state, ProgressEvent("subtask_finished", "section", "failed", HOSTILE, at=1.0))
    doc = rendered(render(state, now=state.started))
    assert_inert(doc)
    assert doc.headings() == ["h3 🐝 ci-swarm run `r1` — starting"]
    items = [t for t in doc.tokens if t.type == "list_item_open"]
    assert len(items) == 2  # one item per subtask: no hostile list item, quote or heading


@pytest.mark.parametrize("place", ["line", "file", "note"])
def test_review_comments_and_bodies(place: str) -> None:
    (conflict,) = hostile_report().conflicts
    patch = "@@ -1,2 +1,2 @@\n-a\n-b\n+k\n+k"
    files = {"line": [PatchFile(FILE, "modified", patch)], "file": [PatchFile(FILE, "modified", None)]}
    plan = plan_review([conflict], files.get(place, []))
    bodies = [c.body for batch in plan.batches for c in batch] + [c.body for c in plan.file_comments]
    bodies.append(review_body(plan, 1, 1, plan.notes))
    for body in bodies:
        doc = rendered(body)
        assert_inert(doc)
        assert doc.headings() == []
        assert all(content == OTHER_SIDE for _, content in doc.fences())
    if place == "line":
        assert rendered(bodies[0]).fences() == [("suggestion", OTHER_SIDE)]

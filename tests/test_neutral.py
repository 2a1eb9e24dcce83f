"""The neutraliser's rules, one at a time (pure; the rendered result is checked in test_render_gfm.py)."""

from __future__ import annotations

import pytest

from ci_swarm.neutral import (
    WORD_JOINER,
    block,
    cell,
    clean,
    clip,
    code_cell,
    code_span,
    defuse,
    fence,
    inline,
    plain,
    table,
)

WJ = WORD_JOINER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ping @octocat now", f"ping @{WJ}octocat now"),
        ("@org/team", f"@{WJ}org/team"),
        ("(@a)", f"(@{WJ}a)"),
        ("a @ b and @-x stay", "a @ b and @-x stay"),  # no letter or digit after the @: no mention
    ],
)
def test_mentions_get_a_word_joiner_after_the_at(text: str, expected: str) -> None:
    assert defuse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fixes #1", f"Fixes #{WJ}1"),
        ("closes: #12", f"closes: #{WJ}12"),
        ("RESOLVED owner/repo#3", f"RESOLVED owner/repo#{WJ}3"),
        ("fix GH-4", f"fix GH-{WJ}4"),
        ("Close https://github.com/o/r/issues/5", f"Close https:{WJ}//github.com/o/r/issues/5"),
        ("fixed http://ghe.example/o/r/pull/6", f"fixed http:{WJ}//ghe.example/o/r/pull/6"),
        ("Fixes #1, #2 and o/r#3", f"Fixes #{WJ}1, #{WJ}2 and o/r#{WJ}3"),
        ("see #7; prefixes #8", "see #7; prefixes #8"),  # no closing keyword: a plain cross-reference
    ],
)
def test_closing_references_are_defused_but_plain_references_stay(text: str, expected: str) -> None:
    assert defuse(text) == expected


def test_invisible_and_bidi_controls_are_stripped_joiners_kept_only_where_needed() -> None:
    hidden = "a\u200bb\u200ec\u200fd\u202ae\u202ef\u2066g\u2069h\ufeffi\u061cj\x00k\x1bl\x7fm"
    assert clean(hidden) == "abcdefghijklm"
    assert clean("👨\u200d👩\u200d👧") == "👨\u200d👩\u200d👧"  # an emoji sequence needs its joiners
    assert clean("می\u200cخواهم") == "می\u200cخواهم"  # ZWNJ inside Persian text
    assert clean("@\u200doctocat") == "@octocat"  # not between two non-ASCII letters: stripped
    assert clean("tab\there") == "tab\there"
    assert clean("a\r\nb\rc\u2028d\u2029e\x85f") == "a\nb\nc\nd\ne\nf"


def test_inline_folds_lines_and_escapes_html_and_markdown() -> None:
    assert inline("one\ntwo\r\nthree") == "one two three"
    assert inline("<details><!-- &amp; <module>") == "&lt;details&gt;&lt;!-- &amp;amp; &lt;module&gt;"
    assert inline("*a* _b_ `c` [d](e) ![f](g) ~h~ $i$ \\ |") == (
        "\\*a\\* \\_b\\_ \\`c\\` \\[d\\](e) !\\[f\\](g) \\~h\\~ \\$i\\$ \\\\ \\|"
    )
    assert inline("  padded\t ") == "padded"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# heading", "\\# heading"),
        ("> quote", "&gt; quote"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("1. item", "1\\. item"),
        ("12) item", "12\\) item"),
        ("===", "\\==="),
        ("    indented code", "indented code"),
        ("```", "\\`\\`\\`"),
        ("~~~", "\\~\\~\\~"),
        ("2024-01-01 is a date", "2024-01-01 is a date"),
    ],
)
def test_block_markers_at_a_line_start_are_escaped(text: str, expected: str) -> None:
    assert inline(text) == expected
    assert block(f"first\n{text}") == f"first\n{expected}"


def test_block_keeps_lines_and_collapses_blank_runs() -> None:
    assert block("a\n\n\n\nb\n# c\n\n") == "a\n\nb\n\\# c"
    assert block("\n\nx") == "x"


def test_cells_escape_pipes_once() -> None:
    assert cell("a|b") == "a\\|b"
    assert cell("a\\|b") == "a\\\\\\|b"  # an escaped backslash, then an escaped pipe
    assert cell("x\ny") == "x y"


def test_plain_is_one_line_without_mentions_or_closing_references_and_no_escapes() -> None:
    assert plain("Fix <thing> for @octocat\nFixes #9") == f"Fix <thing> for @{WJ}octocat Fixes #{WJ}9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name.py", "`name.py`"),
        ("a`b", "``a`b``"),
        ("`start", "`` `start ``"),
        ("end``", "``` end`` ```"),
        (" both ", "`  both  `"),
        ("two\nlines", "`two lines`"),
        ("", "` `"),
        ("@octocat <x>", "`@octocat <x>`"),  # verbatim: code is not linked nor parsed
    ],
)
def test_code_span_outgrows_backticks_and_pads(text: str, expected: str) -> None:
    assert code_span(text) == expected


def test_code_cell_escapes_pipes_and_falls_back_for_backslash_pipe() -> None:
    assert code_cell("a|b") == "`a\\|b`"
    assert code_cell("a\\|b") == cell("a\\|b")


def test_fence_outgrows_backtick_and_tilde_runs() -> None:
    assert fence("a\n") == "```\na\n```"
    assert fence("a") == "```\na\n```"
    assert fence("") == "```\n```"
    assert fence("```py\nx\n```\n", "suggestion").startswith("````suggestion\n")
    assert fence("~~~~~\n").startswith("``````\n")
    assert fence("x\n", "py`\nevil") == "```pyevil\nx\n```"  # an info string holds no backtick or newline
    assert fence("a\u202eb\r\nc") == "```\nab\nc\n```"


def test_table_joins_finished_cells() -> None:
    assert table(["a", "b"], [[cell("x|y"), code_cell("p|q")]]) == "| a | b |\n|---|---|\n| x\\|y | `p\\|q` |"


def test_clip_closes_what_it_cut_open() -> None:
    text = "## head\n\n<details><summary>s</summary>\n\n   ````\n" + "line\n" * 100 + "   ````\n</details>\n"
    clipped = clip(text, 300, "… (truncated)")
    assert len(clipped) <= 300
    assert clipped.endswith("   ````\n</details>\n\n… (truncated)")
    assert clip("short", 300, "tail") == "short"
    plain_cut = clip("x\n" * 500, 300, "tail")
    assert plain_cut.endswith("x\n\ntail") and len(plain_cut) <= 300

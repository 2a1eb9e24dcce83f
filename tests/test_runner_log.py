"""The runner log: nothing untrusted starts a line or a workflow command (unit tests of the pure parts)."""

from __future__ import annotations

import io
import logging
import re

import pytest

from ci_swarm.github import log
from ci_swarm.logtext import one_line

HOSTILE = [
    "title\n::add-mask::s3cret",
    "title\r::error::boom",
    "title\r\n::set-output name=x::y",
    "title\n  ::stop-commands::abc",
    "title\u2028::warning::x",
    "title\x85::notice::x",
    "title\v::group::x",
    "title\f::debug::x",
    "run ##[add-mask]s3cret",
    "bell\x07 and escape \x1b[31m red",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_one_line_has_no_break_no_control_and_no_old_style_command(text: str) -> None:
    folded = one_line(text)
    assert len(folded.splitlines()) == 1
    assert not re.search(r"[\x00-\x1f\x7f\x85\u2028\u2029]", folded)
    assert "##[" not in folded


def test_one_line_keeps_the_text_readable() -> None:
    assert one_line("a\nb") == "a ⏎ b"
    assert one_line("plain title, 50% done") == "plain title, 50% done"


@pytest.mark.parametrize("text", HOSTILE)
def test_info_lines_start_with_ci_swarm(text: str) -> None:
    out = io.StringIO()
    log.info(f"subtask {text} failed", out)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("ci-swarm: subtask ")
    assert "##[" not in line


def test_command_escapes_data_and_properties_as_the_toolkit_does() -> None:
    line = log.command("error", "50%\r\n::add-mask::x", title="a:b,c\nd")
    assert line == "::error title=a%3Ab%2Cc%0Ad::50%25%0D%0A::add-mask::x"
    assert len(line.splitlines()) == 1


def test_untrusted_block_is_fenced_by_a_fresh_token() -> None:
    out = io.StringIO()
    log.untrusted_block("::add-mask::x\nsecond\n", out)
    lines = out.getvalue().splitlines()
    start, token = lines[0].split("::stop-commands::")
    assert start == "" and re.fullmatch(r"[0-9a-f]{32}", token)
    assert lines[1:] == ["::add-mask::x", "second", f"::{token}::"]
    other = io.StringIO()
    log.untrusted_block("x", other)
    assert other.getvalue().splitlines()[0] != lines[0]


def test_logging_records_are_folded(capsys: pytest.CaptureFixture[str]) -> None:
    name = "test_runner_log.folding"  # not under ci_swarm: an Action run in this worker may have folded that
    log.install_logging(name)
    log.install_logging(name)  # once only
    log.install_logging(name + ".child")  # an ancestor folds already: no second handler
    logger = logging.getLogger(name + ".child")
    logger.warning("push failed: %s", "reason\n::add-mask::s3cret")
    err = capsys.readouterr().err
    assert err.splitlines() == ["ci-swarm: warning: push failed: reason ⏎ ::add-mask::s3cret"]


def test_terminal_progress_lines_are_one_line_each_and_never_wrapped() -> None:
    from rich.console import Console

    from ci_swarm.models import Subtask
    from ci_swarm.ports import ProgressEvent
    from ci_swarm.progress import TerminalProgress

    out = io.StringIO()
    console = Console(file=out, width=30, force_terminal=False)
    sub = Subtask(id="a", role="builder", title="t")
    words = "a long title that wraps " * 3
    with TerminalProgress(console, [sub], live=False) as progress:
        progress(ProgressEvent("subtask_started", "a", message=f"{words} ::add-mask::s3cret"))
        progress(ProgressEvent("subtask_finished", "a", status="failed", message="why\n::error::boom"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("[") for line in lines)

"""GitHub Actions runner I/O: outputs (multi-line safe), summary, groups, annotations, masks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ci_swarm.errors import UsageError
from ci_swarm.github import runner
from ci_swarm.models import RunReport, RunStats, SubtaskRecord, SubtaskStatus, Usage
from tests.test_github_publish import parse_outputs


def report() -> RunReport:
    subs = (
        SubtaskRecord(
            "code", "builder", "t", SubtaskStatus.SUCCEEDED, log="::add-mask::oops\nwrote greet.py\n"
        ),
        SubtaskRecord("docs", "documenter", "t", SubtaskStatus.TIMED_OUT, error="no answer in 60s"),
    )
    stats = RunStats(10.0, 18.0, 1.8, 9.0, 0.9, 4, 2)
    usage = Usage(requests=3, input_tokens=1000, output_tokens=234, cost_usd=0.01234)
    return RunReport("r1", "task", "repo", "abc", "swarm/r1", "def", stats, subs, (), (), usage=usage)


def test_outputs_are_multi_line_safe(tmp_path: Path) -> None:
    out = tmp_path / "output"
    out.write_text("earlier=1\n")
    value = "line one\nghadelimiter_x\nline three"
    assert runner.set_outputs(
        {"summary": value, "n": 3, "ok": True, "none": None}, {"GITHUB_OUTPUT": str(out)}
    )
    got = parse_outputs(out.read_text())
    assert got == {"earlier": "1", "summary": value, "n": "3", "ok": "true", "none": ""}


def test_outputs_outside_actions_write_nothing() -> None:
    assert runner.set_outputs({"a": 1}, {}) is False
    assert runner.append_summary("# hi", {}) is False


def test_bad_output_name_is_refused() -> None:
    with pytest.raises(UsageError, match="invalid output name"):
        runner.format_outputs({"a\nb": 1})


def test_summary_appends(tmp_path: Path) -> None:
    path = tmp_path / "summary"
    env = {"GITHUB_STEP_SUMMARY": str(path)}
    runner.append_summary("# one", env)
    runner.append_summary("two\n", env)
    assert path.read_text() == "# one\ntwo\n"


def test_commands_are_escaped() -> None:
    assert runner.command("error", "50% done\nnext", file="a,b.py", line=3, title=None) == (
        "::error file=a%2Cb.py,line=3::50%25 done%0Anext"
    )
    stream = io.StringIO()
    runner.add_mask("s3cret", stream)
    runner.warning("careful", title="ci-swarm", out=stream)
    with runner.group("agent x\nsecond line", stream):
        print("inside", file=stream)
    assert stream.getvalue().splitlines() == [
        "::add-mask::s3cret",
        "::warning title=ci-swarm::careful",
        "::group::agent x%0Asecond line",
        "inside",
        "::endgroup::",
    ]


def test_emit_run_groups_logs_without_letting_them_run_commands(tmp_path: Path) -> None:
    env = {"GITHUB_OUTPUT": str(tmp_path / "o"), "GITHUB_STEP_SUMMARY": str(tmp_path / "s")}
    rep = report()
    stream = io.StringIO()
    runner.emit_run(
        rep, "# summary", runner.run_outputs(rep, pr_number=7, pr_url="http://x/pull/7"), env, stream
    )
    lines = stream.getvalue().splitlines()
    start = lines.index("::group::agent code (builder): succeeded")
    assert lines[start + 1].startswith("::stop-commands::")
    marker = lines[start + 1].split("::")[2]
    assert lines[start + 2] == "::add-mask::oops"  # printed, but inert between the stop markers
    assert lines[start + 4] == f"::{marker}::" and lines[start + 5] == "::endgroup::"
    assert "::error title=ci-swarm::subtask docs timed_out: no answer in 60s" in lines
    outputs = parse_outputs((tmp_path / "o").read_text())
    assert outputs == {
        "run_id": "r1",
        "branch": "swarm/r1",
        "pr_number": "7",
        "pr_url": "http://x/pull/7",
        "conflicts": "0",
        "failed": "1",
        "cost_usd": "0.0123",
        "tokens": "1234",
        "parallelism": "1.80",
        "speedup": "1.80",
    }
    assert (tmp_path / "s").read_text() == "# summary\n"


def test_in_actions() -> None:
    assert runner.in_actions({"GITHUB_ACTIONS": "true"})
    assert not runner.in_actions({})

"""GitHub Actions runner I/O: outputs, job summary, log groups, annotations, masks.

Outputs go to ``$GITHUB_OUTPUT`` in the multi-line form (``name<<DELIM`` … ``DELIM``) with a fresh random
delimiter that is checked not to occur in the value. Every line goes through :mod:`ci_swarm.github.log`:
workflow commands are escaped as the runner expects, and text that did not come from ci-swarm (agent logs)
is printed between ``::stop-commands::`` markers so a log line such as ``::add-mask::`` or ``::set-env``
cannot act as a command.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ci_swarm.errors import UsageError
from ci_swarm.github.log import command as command  # re-exported: callers use runner.command
from ci_swarm.github.log import emit, escape_data, untrusted_block
from ci_swarm.github.log import escape_property as escape_property
from ci_swarm.models import RunReport, SubtaskStatus
from ci_swarm.ports import Published
from ci_swarm.report import to_markdown

OutputValue = str | int | float | bool | None


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("GITHUB_ACTIONS") == "true"


def _text(value: OutputValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_outputs(values: Mapping[str, OutputValue]) -> str:
    """The ``$GITHUB_OUTPUT`` text for ``values`` (pure)."""
    chunks = []
    for name, value in values.items():
        if not name or any(c in name for c in "\r\n=<"):
            raise UsageError(f"invalid output name {name!r}")
        text = _text(value)
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        while delimiter in text:
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        chunks.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
    return "".join(chunks)


def _env_file(var: str, env: Mapping[str, str] | None) -> Path | None:
    env = os.environ if env is None else env
    value = env.get(var)
    return Path(value) if value else None


def set_outputs(values: Mapping[str, OutputValue], env: Mapping[str, str] | None = None) -> bool:
    """Append ``values`` to ``$GITHUB_OUTPUT``; False (nothing written) outside Actions."""
    path = _env_file("GITHUB_OUTPUT", env)
    if path is None:
        return False
    with path.open("a", encoding="utf-8") as fh:
        fh.write(format_outputs(values))
    return True


def append_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    """Append Markdown to ``$GITHUB_STEP_SUMMARY``; False outside Actions."""
    path = _env_file("GITHUB_STEP_SUMMARY", env)
    if path is None:
        return False
    with path.open("a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True


def add_mask(value: str, out: TextIO | None = None) -> None:
    if value:
        emit(command("add-mask", value), out)


def error(message: str, *, title: str | None = None, file: str | None = None, line: int | None = None,
          out: TextIO | None = None) -> None:  # fmt: skip
    emit(command("error", message, title=title, file=file, line=line), out)


def warning(message: str, *, title: str | None = None, out: TextIO | None = None) -> None:
    emit(command("warning", message, title=title), out)


def notice(message: str, *, title: str | None = None, out: TextIO | None = None) -> None:
    emit(command("notice", message, title=title), out)


@contextmanager
def group(title: str, out: TextIO | None = None) -> Iterator[None]:
    emit(f"::group::{escape_data(title)}", out)
    try:
        yield
    finally:
        emit("::endgroup::", out)


def print_untrusted(text: str, out: TextIO | None = None) -> None:
    """Print text that may contain ``::`` lines without letting the runner act on them."""
    untrusted_block(text, out)


def run_outputs(
    report: RunReport, *, branch: str = "", pr_number: int | None = None, pr_url: str = ""
) -> dict[str, OutputValue]:
    """The action's outputs for a run (pure)."""
    return {
        "run_id": report.run_id,
        "branch": branch or report.integration_branch,
        "pr_number": pr_number if pr_number is not None else "",
        "pr_url": pr_url,
        "conflicts": len(report.conflicts),
        "failed": len(report.failed),
        "cost_usd": f"{report.usage.cost_usd:.4f}",
        "tokens": report.usage.tokens,
        "parallelism": f"{report.stats.parallelism:.2f}",
        "speedup": f"{report.stats.speedup:.2f}",  # deprecated alias of parallelism
    }


def emit_run(
    report: RunReport,
    summary_markdown: str,
    outputs: Mapping[str, OutputValue],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> None:
    """Everything a run leaves in the job: agent logs in groups, failures as errors, summary, outputs."""
    for sub in report.subtasks:
        with group(f"agent {sub.id} ({sub.role}): {sub.status.value}", out):
            print_untrusted(sub.log or sub.summary or "(no log)", out)
    for sub in report.subtasks:
        if sub.status is not SubtaskStatus.SUCCEEDED:
            reason = sub.error or sub.status.value
            error(f"subtask {sub.id} {sub.status.value}: {reason}", title="ci-swarm", out=out)
    append_summary(summary_markdown, env)
    set_outputs(outputs, env)


def emit_job(
    report: RunReport,
    result: Published | None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> RunReport:
    """A job's end: :func:`emit_run` for the report as published (``result.report`` when publishing re-merged
    it, else ``report``) with the outputs naming the branch and pull request. Returns that report."""
    final = result.report if result is not None and result.report is not None else report
    outputs = run_outputs(
        final,
        branch=result.branch if result is not None else "",
        pr_number=result.pr_number if result is not None else None,
        pr_url=result.pr_url if result is not None else "",
    )
    emit_run(final, to_markdown(final), outputs, env, out)
    return final

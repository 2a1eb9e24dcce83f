"""The Mermaid Gantt chart of a run's agents, built so that it always parses whatever the ids and roles are.

Mermaid's gantt lexer is case-insensitive and takes the first rule that matches at the start of a line:
a task label that begins with ``section``, ``title``, ``click``, ``call``, ``gantt``, ``topAxis``,
``excludes``, ``dateFormat`` … (all legal subtask ids) is read as that statement, ``#`` and ``%`` start
comments, ``:`` ends the label and ``;`` the line. So:

* a task's key is the subtask id when it is a plain word that starts no keyword and names no tag
  (``crit``, ``done``, ``after`` …), else ``t<n>`` (its row number), which the label then starts with;
* labels and the title keep only letters, digits, spaces and ``. , ( ) / + -`` (anything else becomes
  ``_``), so nothing in them is syntax, and no backtick can close the Markdown fence around the chart;
* times are ``dateFormat x`` (epoch milliseconds), computed from the recorded epoch seconds, so the
  runner's time zone never enters. Runs under an hour are drawn from 0 (the first agent's start) with
  ``%S.%L`` under ten seconds, else ``%M:%S``; longer runs at their real times with ``%H:%M`` (the
  viewer's clock: counted from 0, hours would show the viewer's UTC offset).
"""

from __future__ import annotations

import re

from ci_swarm.models import RunReport, SubtaskRecord, SubtaskStatus

KEYWORDS = (
    "gantt", "dateformat", "inclusiveenddates", "topaxis", "axisformat", "tickinterval", "includes",
    "excludes", "todaymarker", "weekday", "weekend", "title", "acctitle", "accdescr", "accdescription",
    "section", "click", "call", "href", "displaymode",
)  # fmt: skip
TAGS = ("crit", "done", "active", "milestone", "after", "until", "vert")
_PLAIN_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_ROW_KEY = re.compile(r"t\d+")
_UNSAFE = re.compile(r"[^\w .,()/+-]")
HOUR_MS = 3_600_000


def label(text: str) -> str:
    """Text safe in a task label or title: only word characters, spaces and ``.,()/+-``, one line."""
    return " ".join(_UNSAFE.sub("_", text).split())


def plain_key(sub_id: str) -> bool:
    """Whether ``sub_id`` can be its own task key and start its own label."""
    low = sub_id.lower()
    return (
        _PLAIN_ID.fullmatch(sub_id) is not None
        and not _ROW_KEY.fullmatch(low)
        and not low.startswith(KEYWORDS)
        and low not in TAGS
    )


def axis_format(span_ms: int) -> str:
    if span_ms < 10_000:
        return "%S.%L"
    return "%M:%S" if span_ms < HOUR_MS else "%H:%M"


def _row(n: int, s: SubtaskRecord, origin_ms: int) -> str:
    key = s.id if plain_key(s.id) else f"t{n}"
    text = label(f"{s.id} ({s.role})" if key == s.id else f"{key} {s.id} ({s.role})")
    start = round((s.started_at or 0.0) * 1000) - origin_ms
    end = max(start + 1, round((s.finished_at or 0.0) * 1000) - origin_ms)
    tag = "" if s.status is SubtaskStatus.SUCCEEDED else "crit, "
    return f"    {text} :{tag}{key}, {start}, {end}"


def mermaid_gantt(report: RunReport) -> str:
    """A Mermaid timeline of the agents (``dateFormat x``), in a ```` ```mermaid ```` fence."""
    timed = [s for s in report.subtasks if s.started_at is not None and s.finished_at is not None]
    first = round(min((s.started_at or 0.0 for s in timed), default=0.0) * 1000)
    last = round(max((s.finished_at or 0.0 for s in timed), default=0.0) * 1000)
    span = max(0, last - first)
    lines = [
        "```mermaid",
        "gantt",
        f"    title {label(f'Agents of run {report.run_id}')}",
        "    dateFormat x",
        f"    axisFormat {axis_format(span)}",
    ]
    if timed:
        origin = first if span < HOUR_MS else 0
        lines.append("    section agents")
        lines += [_row(n, s, origin) for n, s in enumerate(timed, 1)]
    lines.append("```")
    return "\n".join(lines)

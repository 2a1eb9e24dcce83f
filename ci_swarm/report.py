"""Render a RunReport: JSON (machine), Markdown (PR body, job summary, --report-md), terminal (rich).

Pure functions of the report; no I/O except the ``write_*`` helpers and ``print_terminal``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ci_swarm import neutral
from ci_swarm.attempts_report import attempts_lines, attempts_section, judged
from ci_swarm.gantt import mermaid_gantt as mermaid_gantt
from ci_swarm.models import (
    AttemptRecord,
    CheckResult,
    Conflict,
    Diffstat,
    Judgement,
    MergePolicy,
    MergeRecord,
    MergeStatus,
    Panel,
    PanelVote,
    Repair,
    Resolved,
    RunReport,
    SerialComparison,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
    Verification,
    VerificationStatus,
)

STATUS_ICON = {
    SubtaskStatus.SUCCEEDED: "✅",
    SubtaskStatus.FAILED: "❌",
    SubtaskStatus.TIMED_OUT: "⏱️",
    SubtaskStatus.SKIPPED: "⏭️",
    SubtaskStatus.CANCELLED: "🚫",
    SubtaskStatus.RUNNING: "🔄",
    SubtaskStatus.PENDING: "⏳",
    SubtaskStatus.REJECTED: "⛔",
}


# --- JSON ---------------------------------------------------------------------------------------


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "requests": u.requests,
        "retries": u.retries,
        "turns": u.turns,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "tokens": u.tokens,
        "cost_usd": round(u.cost_usd, 6),
    }


def _subtask(s: SubtaskRecord) -> dict[str, Any]:
    return {
        "id": s.id,
        "role": s.role,
        "title": s.title,
        "status": s.status.value,
        "branch": s.branch,
        "start_commit": s.start_commit,
        "commit": s.commit,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "seconds": round(s.seconds, 3),
        "files": list(s.files),
        "error": s.error,
        "summary": s.summary,
        "outside_paths": list(s.outside_paths),
        "usage": _usage(s.usage),
        "paths": list(s.paths),
        "command": list(s.command),
        "exit_status": s.exit_status,
        "output_tail": s.output_tail,
        "diffstat": _diffstat(s.diffstat),
        "setup_seconds": round(s.setup_seconds, 3),
        "collect_seconds": round(s.collect_seconds, 3),
        "checks": [_check_result(c) for c in s.checks],
        "judgement": _judgement(s.judgement) if s.judgement is not None else None,
    }


def _judgement(j: Judgement) -> dict[str, Any]:
    """Competing attempts (issue #14): the judge, the winner (None: all failed), why, every attempt."""
    return {
        "judge": j.judge.value,
        "winner": j.winner,
        "why": j.why,
        "attempts": [_attempt(a) for a in j.attempts],
        "usage": _usage(j.usage),  # the reviewers' scoring (in the run's total usage, not the subtask's)
    }


def _attempt(a: AttemptRecord) -> dict[str, Any]:
    return {
        "index": a.index,
        "agent": a.agent,
        "status": a.status.value,
        "branch": a.branch,
        "commit": a.commit,
        "tree": a.tree,
        "checks": [_check_result(c) for c in a.checks],
        "diff_lines": a.diff_lines,
        "score": a.score,
        "votes": a.votes,
        "reason": a.reason,
        "usage": _usage(a.usage),
        "seconds": round(a.seconds, 3),
    }


def _diffstat(d: Diffstat) -> dict[str, int]:
    return {"files": d.files, "insertions": d.insertions, "deletions": d.deletions}


def _serial(c: SerialComparison | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "seconds": round(c.seconds, 3),
        "agent_seconds": round(c.agent_seconds, 3),
        "swarm_seconds": round(c.swarm_seconds, 3),
        "ratio": round(c.ratio, 3),
        "commit": c.commit,
        "same_tree": c.same_tree,
        "exit_status": c.exit_status,
        "error": c.error,
    }


def _conflict(m: MergeRecord, c: Conflict) -> dict[str, Any]:
    resolution, by = conflict_resolution(m, c)
    return {
        "path": c.path,
        "kind": c.kind.value,
        "subtask": c.subtask,
        "kept_subtask": c.kept_subtask,
        "lines": list(c.lines),
        "kept_text": c.kept_text,
        "other_text": c.other_text,
        "base_text": c.base_text,
        "reason": c.reason,
        "resolution": resolution.value,
        "resolved_by": by,
    }


def _repair(r: Repair | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "outcome": r.outcome.value,
        "by": r.by,
        "commit": r.commit,
        "start": r.start,
        "reason": r.reason,
        "checks": [_check_result(c) for c in r.checks],
        "seconds": round(r.seconds, 3),
        "usage": _usage(r.usage),  # not in the run's total unless the run counted it
    }


def _merge_policy(p: MergePolicy) -> dict[str, Any]:
    return {
        "order": p.order.value,
        "prefer": p.prefer_label,
        "insertions": p.insertions.value,
        "on_conflict": p.on_conflict.value,
        "resolver": p.resolver.kind if p.resolver is not None else None,
    }


def _merge(m: MergeRecord) -> dict[str, Any]:
    return {
        "subtask": m.subtask,
        "order": m.order,
        "status": m.status.value,
        "commit": m.commit,
        "predicted_conflicts": list(m.predicted_conflicts),
        "conflicts": len(m.conflicts),
        "seconds": round(m.seconds, 4),
        "joined": m.joined,
        "resolution": m.resolution.value if m.resolution is not None else None,
        "repair": _repair(m.repair),
    }


def to_dict(report: RunReport) -> dict[str, Any]:
    st = report.stats
    return {
        "version": report.version,
        "run_id": report.run_id,
        "task": report.task,
        "repo": report.repo,
        "base": report.base,
        "integration_branch": report.integration_branch,
        "integration_commit": report.integration_commit,
        "wall_seconds": round(st.wall_seconds, 3),
        "agent_seconds_sum": round(st.agent_seconds_sum, 3),
        "parallelism": round(st.parallelism, 3),
        "speedup": round(st.speedup, 3),  # deprecated: the same figure as parallelism
        "critical_path_seconds": round(st.critical_path_seconds, 3),
        "bound_seconds": round(st.bound_seconds, 3),
        "efficiency": round(st.efficiency, 3),
        "max_agents": st.max_agents,
        "max_in_flight": st.max_in_flight,
        "run_setup_seconds": round(st.run_setup_seconds, 3),
        "cleanup_seconds": round(st.cleanup_seconds, 3),
        "setup_seconds_sum": round(st.setup_seconds_sum, 3),
        "collect_seconds_sum": round(st.collect_seconds_sum, 3),
        "merge_seconds_sum": round(st.merge_seconds_sum, 3),
        "serial": _serial(report.serial),
        "merge_policy": _merge_policy(report.merge_policy),
        "rationale": report.rationale,
        "usage": _usage(report.usage),
        "budget_stopped": report.budget_stopped,
        "interrupted": report.interrupted,
        "sandbox": report.sandbox,
        "timeout_seconds": report.timeout_seconds,
        "notes": list(report.notes),
        "subtasks": [_subtask(s) for s in report.subtasks],
        "merges": [_merge(m) for m in report.merges],
        "conflicts": [_conflict(m, c) for m in report.merges for c in m.conflicts],
        "overlap": [{"a": o.a, "b": o.b, "path": o.path, "kind": o.kind.value} for o in report.overlap],
        "verification": verification_dict(report.verification),
        "panel": panel_dict(report.panel),
    }


def to_json(report: RunReport) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


# --- Markdown -----------------------------------------------------------------------------------
# Every piece of text the run did not write itself (ids, roles, titles, reasons, summaries, file names,
# the request, notes, the other side of a conflict) goes through ci_swarm.neutral.


def _repaired(report: RunReport) -> str:
    repaired = len(report.conflicts) - len(report.unrepaired_conflicts)
    return f" ({repaired} repaired by agents)" if repaired else ""


def headline(report: RunReport) -> str:
    st = report.stats
    ok = sum(s.status is SubtaskStatus.SUCCEEDED for s in report.subtasks)
    parts = [
        f"{ok}/{len(report.subtasks)} subtasks succeeded",
        f"{len(report.conflicts)} conflict(s) recorded" + _repaired(report),
        f"wall {st.wall_seconds:.1f}s",
        f"parallelism {st.parallelism:.2f}×",
    ]
    if report.serial is not None:
        parts.append(f"serial {report.serial.seconds:.1f}s ({report.serial.ratio:.2f}× the swarm's wall)")
    if report.usage.requests:
        parts.append(f"${report.usage.cost_usd:.4f}")
    return " · ".join(parts)


def summary_lines(report: RunReport) -> tuple[str, ...]:
    """What ``ci-swarm run`` prints on stdout: the summary and the integration branch with its commit, one
    line each (never cut to a terminal's width; untrusted text made one inert line by the caller)."""
    st = report.stats
    ok = sum(s.status is SubtaskStatus.SUCCEEDED for s in report.subtasks)
    summary = (
        f"summary: {ok}/{len(report.subtasks)} subtasks succeeded, {len(report.conflicts)} conflict(s), "
        f"wall {st.wall_seconds:.2f}s, Σ agent time {st.agent_seconds_sum:.2f}s, "
        f"parallelism {st.parallelism:.2f}x"
    )
    lines = [summary]
    if report.serial is not None:
        same = "same tree" if report.serial.same_tree else "different tree"
        lines.append(
            f"serial: {report.serial.seconds:.2f}s vs swarm {report.serial.swarm_seconds:.2f}s "
            f"(ratio {report.serial.ratio:.2f}, {same})"
        )
    lines += [repair_line(m.subtask, m.repair) for m in report.merges if m.repair is not None]
    lines += attempts_lines(report)
    lines.append(f"integration: {report.integration_branch} {report.integration_commit}")
    return tuple(lines)


def subtasks_table(report: RunReport) -> str:
    rows = [
        [
            neutral.code_cell(s.id),
            neutral.cell(s.role),
            f"{STATUS_ICON.get(s.status, '')} {s.status.value}",
            str(len(s.files)),
            f"{s.seconds:.1f}s",
            str(s.usage.tokens) if s.usage.tokens else "–",
            f"${s.usage.cost_usd:.4f}" if s.usage.cost_usd else "–",
            neutral.cell(s.error or s.summary),
        ]
        for s in report.subtasks
    ]
    return neutral.table(["subtask", "role", "status", "files", "time", "tokens", "cost", "note"], rows)


def merges_table(report: RunReport) -> str:
    rows = [
        [
            str(m.order),
            neutral.code_cell(m.subtask),
            m.status.value + (f" · {joined_text(m.joined)}" if m.joined else ""),
            neutral.cell(m.commit[:10]),
            ", ".join(neutral.code_cell(p) for p in m.predicted_conflicts) or "–",
            str(len(m.conflicts)) + (f" ({m.resolution.value})" if m.resolution is not None else ""),
        ]
        for m in report.merges
    ]
    return neutral.table(["#", "subtask", "merge", "commit", "predicted conflicts", "conflicts"], rows)


def overlap_table(report: RunReport) -> str:
    code = neutral.code_cell
    rows = [[code(o.a), code(o.b), code(o.path), o.kind.value] for o in report.overlap]
    return neutral.table(["a", "b", "path", "overlap"], rows)


def conflicts_section(merges: Iterable[MergeRecord]) -> str:
    """Each conflicting region: where, which side the policy kept, how it ended (kept, or redone / resolved
    / refused and by whom) and the other side in full."""
    out = []
    pairs = [(m, c) for m in merges for c in m.conflicts]
    for i, (m, c) in enumerate(pairs, 1):
        where = f"lines {c.lines[0]}–{c.lines[1]}" if c.lines[0] else "whole file"
        reason = f" — {neutral.inline(c.reason)}" if c.reason else ""
        kept, other = neutral.inline(c.kept_subtask), neutral.inline(c.subtask)
        ending = resolution_text(*conflict_resolution(m, c))
        out.append(
            f"{i}. {neutral.code_span(c.path)} ({c.kind.value}, {where}): kept **{kept}**, "
            f"recorded **{other}**'s side{reason} · resolution: {ending}"
        )
        out.append("")
        out.append("   <details><summary>the other side</summary>\n")
        out.append("   " + neutral.fence(c.other_text).replace("\n", "\n   "))
        out.append("   </details>")
    return "\n".join(out)


def to_markdown(report: RunReport) -> str:
    st = report.stats
    summary = neutral.table(
        ["integration branch", "base", "commit", "agents (cap)", "max in flight", "efficiency", "sandbox"],
        [
            [
                neutral.code_cell(report.integration_branch),
                neutral.cell(report.base[:10]),
                neutral.cell(report.integration_commit[:10]),
                str(st.max_agents),
                str(st.max_in_flight),
                f"{st.efficiency:.2f}",
                neutral.cell(report.sandbox),
            ]
        ],
    )
    parts = [f"## ci-swarm run {neutral.code_span(report.run_id)}"]
    if report.task:
        parts.append(f"**Task:** {neutral.block(report.task)}")
    parts += [headline(report), summary]
    if report.rationale:
        parts.append("**Plan:** " + neutral.block(report.rationale))
    parts += [f"> {neutral.inline(note)}" for note in report.notes]
    parts += ["### Subtasks", subtasks_table(report)]
    if judged(report):
        parts += ["### Attempts", attempts_section(report)]
    verified = report.verification.status is not VerificationStatus.NOT_RUN
    parts += [*(["### Verification"] if verified else []), verification_section(report.verification)]
    parts += ["### Timeline", mermaid_gantt(report)]
    if report.merges:
        parts += ["### Merges", merges_table(report)]
    if report.overlap:
        parts += ["### Overlap", overlap_table(report)]
    if report.conflicts:
        parts += ["### Conflicts", conflicts_section(report.merges)]
    if any(m.repair is not None for m in report.merges):
        parts += ["### Conflict repairs", repairs_section(report.merges)]
    outside = [(s.id, p) for s in report.subtasks for p in s.outside_paths]
    if outside:
        rows = [[neutral.code_cell(sub), neutral.code_cell(path)] for sub, path in outside]
        parts += ["### Writes outside owned paths", neutral.table(["subtask", "path"], rows)]
    if report.panel is not None:
        parts += ["### Review panel", panel_section(report.panel)]
    parts += ["### Timing", timing_table(report)]
    if report.serial is not None:
        parts += ["### Serial comparison", serial_section(report.serial, report.stats.wall_seconds)]
    if report.subtasks:
        parts += ["### Subtask details", *(subtask_details(s) for s in report.subtasks)]
    if report.usage.requests:
        parts += ["### Usage", _usage_table(report.usage)]
    parts.append(f"*ci-swarm {neutral.code_span(report.version)}*")
    return "\n\n".join(parts) + "\n"


def timing_table(report: RunReport) -> str:
    """Wall time and where it went: agents, the critical path, the fixed costs of the run and per agent."""
    st = report.stats
    rows = [
        ["wall (start of the run to this report)", f"{st.wall_seconds:.2f}s"],
        ["Σ agent time", f"{st.agent_seconds_sum:.2f}s"],
        ["parallelism (Σ agent time / wall)", f"{st.parallelism:.2f}×"],
        ["critical path", f"{st.critical_path_seconds:.2f}s"],
        ["bound max(critical path, Σ/cap)", f"{st.bound_seconds:.2f}s"],
        ["run setup (before the first agent)", f"{st.run_setup_seconds:.2f}s"],
        ["Σ clone setup", f"{st.setup_seconds_sum:.2f}s"],
        ["Σ collection", f"{st.collect_seconds_sum:.2f}s"],
        ["Σ merges", f"{st.merge_seconds_sum:.2f}s"],
        ["clean-up (after the last agent)", f"{st.cleanup_seconds:.2f}s"],
    ]
    return neutral.table(["figure", "value"], rows)


def serial_section(c: SerialComparison, wall: float) -> str:
    tree = (
        "The serial run's tree **equals** the swarm's integration tree."
        if c.same_tree
        else "The serial run's tree **differs from** the swarm's integration tree."
    )
    rows = [
        [
            f"{wall:.2f}s",
            f"{c.seconds:.2f}s",
            f"{c.agent_seconds:.2f}s",
            f"{c.ratio:.2f}×",
            "–" if c.exit_status is None else str(c.exit_status),
            neutral.cell(c.commit[:10]),
        ]
    ]
    header = ["swarm wall", "serial (setup + command + collection)", "serial command", "serial / swarm"]
    parts = [neutral.table([*header, "exit", "commit"], rows), tree]
    if c.error:
        parts.append(f"> {neutral.inline(c.error)}")
    return "\n\n".join(parts)


def subtask_details(s: SubtaskRecord) -> str:
    """One subtask's owned paths, command, exit status, diffstat and output tail."""
    d = s.diffstat
    lines = [
        f"**{neutral.code_span(s.id)}** — {s.status.value}",
        "",
        f"- paths: {', '.join(neutral.code_span(p) for p in s.paths) or 'any'}",
        f"- diffstat: {d.files} file(s) changed, +{d.insertions} −{d.deletions}",
    ]
    if s.command:
        lines.append(f"- command: {neutral.code_span(' '.join(s.command))}")
    if s.command or s.exit_status is not None:
        lines.append(f"- exit status: {'–' if s.exit_status is None else s.exit_status}")
    if s.outside_paths:
        lines.append(f"- outside owned paths: {', '.join(neutral.code_span(p) for p in s.outside_paths)}")
    if s.output_tail:
        lines += ["", "<details><summary>output (last lines)</summary>", "", neutral.fence(s.output_tail)]
        lines += ["", "</details>"]
    return "\n".join(lines)


def _usage_table(u: Usage) -> str:
    return neutral.table(
        ["requests", "retries", "input", "output", "cache read", "cache write", "cost"],
        [
            [
                str(u.requests),
                str(u.retries),
                str(u.input_tokens),
                str(u.output_tokens),
                str(u.cache_read_tokens),
                str(u.cache_write_tokens),
                f"${u.cost_usd:.4f}",
            ]
        ],
    )


# --- files and terminal -------------------------------------------------------------------------


def write_json(report: RunReport, path: Path) -> None:
    path.write_text(to_json(report), encoding="utf-8")


def write_markdown(report: RunReport, path: Path) -> None:
    path.write_text(to_markdown(report), encoding="utf-8")


def print_terminal(report: RunReport, console: Console) -> None:
    table = Table(title=f"subtasks of {report.run_id}")
    for col in ("subtask", "role", "status", "files", "time", "branch"):
        table.add_column(col)
    for s in report.subtasks:
        table.add_row(
            s.id,
            s.role,
            f"{STATUS_ICON.get(s.status, '')} {s.status.value}",
            str(len(s.files)),
            f"{s.seconds:.2f}s",
            s.branch,
        )
    console.print(table)
    merges = Table(title="merges (sequential, in the object database)")
    for col in ("#", "subtask", "merge", "commit", "predicted", "conflicts"):
        merges.add_column(col)
    for m in report.merges:
        style = "yellow" if m.status is MergeStatus.CONFLICTED else None
        merges.add_row(
            str(m.order),
            m.subtask,
            m.status.value,
            m.commit[:10],
            ", ".join(m.predicted_conflicts) or "-",
            str(len(m.conflicts)),
            style=style,
        )
    console.print(merges)
    for c in report.conflicts:
        console.print(
            f"[yellow]conflict[/] {escape(c.path)} lines {c.lines[0]}-{c.lines[1]} ({c.kind.value}): "
            f"kept {c.kept_subtask}, recorded {c.subtask}'s side"
        )
    for m in report.merges:
        if m.repair is not None:
            style = "green" if m.repair.outcome is not Resolved.REFUSED else "yellow"
            console.print(f"[{style}]{escape(repair_line(m.subtask, m.repair))}[/]", soft_wrap=True)
    st = report.stats
    console.print(
        f"wall {st.wall_seconds:.2f}s · Σ agent time {st.agent_seconds_sum:.2f}s · parallelism "
        f"{st.parallelism:.2f}× · critical path {st.critical_path_seconds:.2f}s · bound "
        f"{st.bound_seconds:.2f}s · efficiency {st.efficiency:.2f} · max in flight "
        f"{st.max_in_flight}/{st.max_agents} · sandbox {escape(report.sandbox)} · timeout "
        f"{f'{report.timeout_seconds:g}s' if report.timeout_seconds is not None else 'none'} per subtask",
        soft_wrap=True,
    )
    console.print(
        f"setup: run {st.run_setup_seconds:.2f}s · Σ clones {st.setup_seconds_sum:.2f}s · Σ collection "
        f"{st.collect_seconds_sum:.2f}s · Σ merges {st.merge_seconds_sum:.2f}s · clean-up "
        f"{st.cleanup_seconds:.2f}s",
        soft_wrap=True,
    )


# --- verification (issue #12) ---------------------------------------------------------------------------


def _check_result(c: CheckResult) -> dict[str, Any]:
    return {
        "name": c.name,
        "ok": c.ok,
        "exit_status": c.exit_status,
        "seconds": round(c.seconds, 3),
        "timed_out": c.timed_out,
        "flipped": c.flipped,
        "output_tail": c.output_tail,
    }


def verification_dict(v: Verification) -> dict[str, Any]:
    """The JSON report's ``verification``: status (passed | failed | not_run), the final tip's check
    results, the number of check runs and rounds, the culprits set aside and why (with an interaction's
    partner)."""
    return {
        "status": v.status.value,
        "note": v.note,
        "check_runs": v.check_runs,
        "check_rounds": v.check_rounds,
        "speculative_runs": v.speculative_runs,
        "seconds": round(v.seconds, 3),
        "checks": [_check_result(c) for c in v.checks],
        "culprits": [
            {
                "subtask": c.subtask,
                "check": c.check,
                "reason": c.reason,
                "output_tail": c.output_tail,
                "partner": c.partner,
            }
            for c in v.culprits
        ],
    }


_VERDICT = {
    VerificationStatus.PASSED: "**passed**",
    VerificationStatus.FAILED: "**failed**",
    VerificationStatus.NOT_RUN: "**not run**",
}


def verification_section(v: Verification) -> str:
    """Markdown: the verdict in words, the checks on the verified tip, and what was set aside and why (not
    run: one plain sentence, under no heading of its own)."""
    head = f"Verification {_VERDICT[v.status]}: {neutral.inline(v.note)}"
    if v.status is VerificationStatus.NOT_RUN:
        return head
    rounds = f" in {v.check_rounds} round(s)" if 0 < v.check_rounds < v.check_runs else ""
    early = f", {v.speculative_runs} more while agents ran" if v.speculative_runs else ""
    parts = [f"{head} ({v.check_runs} check run(s){rounds}{early}, {v.seconds:.1f}s)"]
    parts.append(checks_table(v.checks))
    flipped = [c.name for c in v.checks if c.flipped]
    if flipped:
        names = ", ".join(neutral.code_span(n) for n in flipped)
        parts.append(f"Flaky: {names} failed once and passed when re-checked.")
    if v.culprits:
        parts.append("**Set aside** (their branches are kept):")
        for c in v.culprits:
            check = f" (check {neutral.code_span(c.check)})" if c.check else ""
            with_ = f" (with {neutral.code_span(c.partner)}, which stays)" if c.partner else ""
            parts.append(f"- {neutral.code_span(c.subtask)}{check}{with_}: {neutral.inline(c.reason)}")
            if c.output_tail:
                parts.append(neutral.fence(c.output_tail))
    failing = [c for c in v.checks if not c.ok and c.output_tail]
    parts += [neutral.fence(c.output_tail) for c in failing]
    return "\n\n".join(parts)


def _check_word(c: CheckResult) -> str:
    return "pass" if c.ok else ("timed out" if c.timed_out else "fail")


def checks_table(checks: Iterable[CheckResult]) -> str:
    """Markdown: one row per check result (the verification's and a repair's gate alike)."""
    rows = [
        [
            neutral.code_cell(c.name),
            _check_word(c),
            neutral.cell(str(c.exit_status)),
            f"{c.seconds:.1f}s",
            "yes" if c.flipped else "",
        ]
        for c in checks
    ]
    return neutral.table(["check", "result", "exit", "time", "flipped"], rows)


# --- conflict repairs (issue #12) -----------------------------------------------------------------------


def joined_text(joined: int) -> str:
    return f"{joined} insert/insert region{'s' if joined != 1 else ''} joined"


def conflict_resolution(m: MergeRecord, c: Conflict) -> tuple[Resolved, str]:
    """How one conflict of merge ``m`` ended and who did it: the conflict's own record, else its merge's
    repair, else the policy's side kept (by nobody)."""
    if c.resolution is not None:
        return c.resolution, c.resolved_by
    if m.repair is not None:
        return m.repair.outcome, m.repair.by
    return Resolved.KEPT, ""


def resolution_text(resolution: Resolved, by: str) -> str:
    """Markdown: ``kept``, ``**resolved** by X``, ``**refused** (X's attempt)`` — who is untrusted text."""
    who = neutral.inline(by)
    if resolution is Resolved.KEPT:
        return "kept"
    if resolution is Resolved.REFUSED:
        return f"**refused** ({who}'s attempt; the kept side stands)" if by else "**refused** (kept)"
    return f"**{resolution.value}** by {who}" if by else f"**{resolution.value}**"


def _gate(checks: tuple[CheckResult, ...]) -> str:
    if not checks:
        return "no checks ran"
    failed = [c for c in checks if not c.ok]
    if not failed:
        return f"checks passed ({len(checks)})"
    return "checks failed: " + ", ".join(f"{c.name} ({_check_word(c)})" for c in failed)


def repair_line(subtask: str, r: Repair) -> str:
    """One plain line per repair (``summary_lines``, the terminal); untrusted text left to the caller."""
    line = f"repair: {subtask} {r.outcome.value} by {r.by or 'an agent'}, {_gate(r.checks)}"
    line += f", {r.seconds:.2f}s"
    return line + (f": {r.reason}" if r.reason else "")


def repairs_section(merges: Iterable[MergeRecord]) -> str:
    """Markdown: each agent's attempt at a conflicted merge — subtask, outcome, by whom, the refusal
    reason, the gate's checks (a failing check's log tail folded away)."""
    parts = []
    for m in merges:
        r = m.repair
        if r is None:
            continue
        commit = f", commit {neutral.code_span(r.commit[:10])}" if r.commit else ""
        cost = f", ${r.usage.cost_usd:.4f}" if r.usage.cost_usd else ""
        item = (
            f"- {neutral.code_span(m.subtask)}: {resolution_text(r.outcome, r.by)} — {_gate(r.checks)} "
            f"({r.seconds:.1f}s{commit}{cost})"
        )
        if r.reason:
            item += f"; refused because: {neutral.inline(r.reason)}"
        parts.append(item)
        if r.checks:
            parts.append(checks_table(r.checks))
        for c in r.checks:
            if not c.ok and c.output_tail:
                parts.append(f"{neutral.code_span(c.name)} failed:")
                parts += ["<details><summary>output (last lines)</summary>", neutral.fence(c.output_tail)]
                parts.append("</details>")
    return "\n\n".join(parts)


# --- the review panel (issue #14) ----------------------------------------------------------------------


def panel_dict(panel: Panel | None) -> dict[str, Any] | None:
    """The panel in the JSON report: every vote with its verdict, role, reasons and cost."""
    if panel is None:
        return None
    return {
        "required": panel.required,
        "approvals": panel.approvals,
        "ready": panel.ready,
        "votes": [
            {
                "voter": v.voter,
                "role": v.role,
                "verdict": verdict(v),
                "approve": v.approve,
                "abstained": v.abstained,
                "reasons": v.reasons,
                "usage": _usage(v.usage),
            }
            for v in panel.votes
        ],
    }


def verdict(vote: PanelVote) -> str:
    """``approve``, ``request_changes`` or ``abstained``."""
    if vote.abstained:
        return "abstained"
    return "approve" if vote.approve else "request_changes"


def panel_headline(panel: Panel) -> str:
    """One line: ready or draft, and the approvals counted against those required."""
    counted = f"{panel.approvals} of {len(panel.votes)} voter(s) approved, {panel.required} required"
    if panel.ready:
        return f"**Ready for review:** {counted}."
    return f"**Draft:** {counted}."


def panel_section(panel: Panel) -> str:
    """The Markdown section: the headline and one row per voter (untrusted reasons neutralised)."""
    rows = [
        [
            neutral.cell(v.voter),
            neutral.cell(v.role),
            verdict(v).replace("_", " "),
            f"${v.usage.cost_usd:.4f}",
            neutral.cell(v.reasons) or "–",
        ]
        for v in panel.votes
    ]
    return (
        panel_headline(panel) + "\n\n" + neutral.table(["voter", "role", "verdict", "cost", "reasons"], rows)
    )


def panel_review_body(panel: Panel) -> str:
    """The one PR review that carries the panel's reasons when it did not approve (untrusted text
    neutralised, each voter's reasons quoted under its verdict)."""
    lines = [
        f"### ci-swarm review panel\n\n{panel_headline(panel)} The pull request is opened as a draft.",
        "",
    ]
    for v in panel.votes:
        lines.append(f"**{neutral.inline(v.voter)}** — {verdict(v).replace('_', ' ')}")
        reasons = neutral.block(v.reasons) or "(no reasons given)"
        lines += ["", "> " + reasons.replace("\n", "\n> "), ""]
    return "\n".join(lines).rstrip("\n") + "\n"

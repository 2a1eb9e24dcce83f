"""The progress comment's state, rendering and throttling (no network: the edit is a recorder)."""

from __future__ import annotations

import threading

from ci_swarm.github.progress import ProgressComment, apply, initial_state, render, workflow_run_url
from ci_swarm.models import Subtask, Usage
from ci_swarm.ports import ProgressEvent


def test_events_drive_the_checklist() -> None:
    subs = [Subtask("code", "builder", "Write greet()"), Subtask("docs", "documenter", "Docs")]
    state = initial_state("r1", subs, "https://github.example/o/r/actions/runs/7")
    for event in (
        ProgressEvent("run_started"),
        ProgressEvent("subtask_started", "code", "running", at=100.0),
        ProgressEvent("subtask_finished", "code", "succeeded", at=112.0),
        ProgressEvent("merge_finished", "code", "conflicted"),
        ProgressEvent("subtask_started", "docs", "running", at=100.0),
        ProgressEvent("subtask_finished", "docs", "timed_out", "no answer in 60s", at=160.0),
    ):
        state = apply(state, event)
    text = render(state, now=state.started + 75)
    assert text.splitlines()[0] == "<!-- ci-swarm:progress run=r1 -->"
    assert "running (2/2 done)" in text
    assert "[workflow run](https://github.example/o/r/actions/runs/7) · elapsed 1m 15s" in text
    assert "- [x] `code` (builder) Write greet() — ✅ succeeded in 12s · merged with conflicts" in text
    assert "- [ ] `docs` (documenter) Docs — ⏱️ timed out in 1m 00s — no answer in 60s" in text
    final = render(apply(state, ProgressEvent("run_finished", status="done")))
    assert "— finished" in final


def test_unknown_subtask_in_an_event_gets_a_row() -> None:
    state = apply(initial_state("r1", ["a"]), ProgressEvent("subtask_started", "late", "running"))
    assert [r.id for r in state.rows] == ["a", "late"]


def test_workflow_run_link_from_the_runner_env() -> None:
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "42"}
    assert workflow_run_url(env) == "https://github.com/o/r/actions/runs/42"
    assert workflow_run_url({}) == ""


def test_edits_are_throttled_and_the_last_one_is_final() -> None:
    bodies: list[str] = []
    edited = threading.Event()

    def edit(body: str) -> None:
        bodies.append(body)
        edited.set()

    ids = [f"a{i}" for i in range(16)]
    progress = ProgressComment(
        edit, "r1", ids, min_interval=2.0, usage=lambda: Usage(cost_usd=0.5, input_tokens=9)
    )
    progress(ProgressEvent("run_started"))
    assert edited.wait(60)  # the first change is shown at once
    edited.clear()
    for sub in ids:  # 32 events well inside one interval: they wait for the next edit
        progress(ProgressEvent("subtask_started", sub, "running"))
        progress(ProgressEvent("subtask_finished", sub, "succeeded"))
    assert edited.wait(60)  # one throttled edit shows them (no sleep racing the interval)
    progress.finish("**all done**", usage=Usage(cost_usd=1.25, output_tokens=10))
    assert 2 <= len(bodies) <= 4  # 33 events: the first edit, at most a couple throttled ones, the final
    assert "cost $0.5000 (9 tokens)" in bodies[0]
    assert bodies[-1].endswith("**all done**") and "— finished" in bodies[-1]
    assert "cost $1.2500 (10 tokens)" in bodies[-1]
    assert all(f"- [x] `{s}`" in bodies[-1] for s in ids)
    assert progress.edits == len(bodies)


def test_a_failing_edit_never_breaks_the_run() -> None:
    def edit(body: str) -> None:
        raise RuntimeError("502 from GitHub")

    progress = ProgressComment(edit, "r1", ["a"], min_interval=0.0)
    progress(ProgressEvent("subtask_started", "a", "running"))
    progress.finish()
    assert progress.edits == 0
    assert progress.failures and "502 from GitHub" in progress.failures[-1]


def test_very_long_final_text_is_truncated_under_githubs_limit() -> None:
    bodies: list[str] = []
    progress = ProgressComment(bodies.append, "r1", ["a"])
    progress.finish("x" * 100_000)
    assert len(bodies[-1]) <= 65_536 and "truncated" in bodies[-1]


def test_untrusted_text_in_rows_and_run_id_is_neutralised() -> None:
    subs = [Subtask("a", "@octocat", "<details> Fixes #1\n# heading")]
    failed = ProgressEvent("subtask_finished", "a", "failed", "\n\n<!-- boom")
    state = apply(initial_state("x-->y", subs), failed)
    text = render(state, now=state.started)
    marker, heading = text.splitlines()[:2]
    assert marker == "<!-- ci-swarm:progress run=x_-_y -->" and marker.count("-->") == 1
    assert heading.startswith("### 🐝 ci-swarm run `x-->y` —")
    assert "- [ ] `a` (@\u2060octocat) &lt;details&gt; Fixes #\u20601 # heading — ❌ failed" in text
    assert text.endswith("— &lt;!-- boom")

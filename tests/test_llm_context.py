"""What the planner and the agents are told about the repository, read back from the fake API's request log:
the instruction files (AGENTS.md, .github/copilot-instructions.md), the repo map's budget, and role prompts
from the repository config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ci_swarm import git
from ci_swarm.config import config_from_text
from ci_swarm.llm.factory import claude_backend, claude_planner
from ci_swarm.llm.planner import ClaudePlanner
from ci_swarm.llm.prompts import ROLE_PROMPTS
from ci_swarm.llm.session import LLMSession, LLMSettings
from ci_swarm.models import AgentSpec, Request, Subtask
from ci_swarm.testing.anthropic_script import (
    PLANNER_MATCH,
    Conversation,
    Script,
    subtask_match,
)
from ci_swarm.testing.fake_anthropic import FakeAnthropic, RequestRecord
from tests.anthropic_helpers import (
    KEY,
    SAMPLE_FILES,
    arun,
    context,
    make_workspace,
    session_for,
    settings,
    three_subtask_script,
)
from tests.fixtures import make_repo
from tests.helpers import clean_env, run_cli

AGENTS_MD = "Agents: run `make check` before finishing. Never touch vendor/.\n"
COPILOT = "Prefer dataclasses over dicts for records.\n"
SUBMIT = {
    "tool": "submit_plan",
    "input": {
        "rationale": "small",
        "subtasks": [{"id": "a", "role": "builder", "title": "do a", "instructions": "do a", "paths": []}],
    },
}
FINISH = {"tool": "finish", "input": {"summary": "done"}}


def planner_brief(fake: FakeAnthropic) -> str:
    record = next(r for r in fake.requests if r.conversation == "planner")
    assert record.body is not None
    brief = record.body["messages"][0]["content"]
    assert isinstance(brief, str)
    return brief


def plan_once(repo: Path, **overrides: Any) -> str:
    """Run the Claude planner once against the fake; the brief it sent."""
    script = Script(conversations=(Conversation("planner", PLANNER_MATCH, (SUBMIT,)),))
    with FakeAnthropic(script) as fake:
        session = session_for(fake, **overrides)
        planner = claude_planner(session)
        assert isinstance(planner, ClaudePlanner)

        async def go() -> None:
            try:
                await planner.plan(Request("tidy up"), repo)
            finally:
                await session.aclose()

        arun(go())
    return planner_brief(fake)


def section(text: str, heading: str) -> str:
    """The body of a ``# heading`` section of the rendered repo context."""
    start = text.index(f"# {heading}\n") + len(heading) + 3
    end = text.find("\n\n# ", start)
    return text[start:] if end < 0 else text[start:end]


def system_texts(record: RequestRecord) -> list[str]:
    assert record.body is not None
    system = record.body["system"]
    assert isinstance(system, list)
    return [block["text"] for block in system]


# --- instruction files -------------------------------------------------------------------------------


def test_planner_context_has_agents_md_and_copilot_instructions(tmp_path: Path) -> None:
    files = {**SAMPLE_FILES, "AGENTS.md": AGENTS_MD, ".github/copilot-instructions.md": COPILOT}
    brief = plan_once(make_repo(tmp_path / "repo", files))
    assert section(brief, "Repository instructions (AGENTS.md)") == AGENTS_MD
    assert section(brief, "Repository instructions (.github/copilot-instructions.md)") == COPILOT
    assert section(brief, "Repository instructions (CLAUDE.md)") == SAMPLE_FILES["CLAUDE.md"]
    # in a fixed order: CLAUDE.md, AGENTS.md, then Copilot's
    positions = [
        brief.index(f"({name})") for name in ("CLAUDE.md", "AGENTS.md", ".github/copilot-instructions.md")
    ]
    assert positions == sorted(positions)


def test_planner_context_leaves_out_instruction_files_that_are_absent(tmp_path: Path) -> None:
    files = {k: v for k, v in SAMPLE_FILES.items() if k != "CLAUDE.md"}
    brief = plan_once(make_repo(tmp_path / "repo", {**files, "AGENTS.md": AGENTS_MD}))
    assert "Repository instructions (AGENTS.md)" in brief
    assert "CLAUDE.md" not in brief and "copilot-instructions" not in brief


def test_instruction_files_are_read_at_the_committed_revision(tmp_path: Path) -> None:
    """An uncommitted edit in the checkout is not what the planner is told (it reads from git)."""
    repo = make_repo(tmp_path / "repo", {**SAMPLE_FILES, "AGENTS.md": AGENTS_MD})
    (repo / "AGENTS.md").write_text("uncommitted scribbles\n")
    (repo / ".github").mkdir()
    (repo / ".github" / "copilot-instructions.md").write_text(COPILOT)  # untracked
    brief = plan_once(repo)
    assert section(brief, "Repository instructions (AGENTS.md)") == AGENTS_MD
    assert "uncommitted scribbles" not in brief and "copilot-instructions" not in brief


def test_agents_see_the_instruction_files_in_their_shared_system_block(tmp_path: Path) -> None:
    files = {**SAMPLE_FILES, "AGENTS.md": AGENTS_MD, ".github/copilot-instructions.md": COPILOT}
    repo = make_repo(tmp_path / "repo", files)
    sub = Subtask("code", "builder", "Add greet()", "write src/greet.py")
    script = Script(conversations=(Conversation("code", subtask_match("code"), (FINISH,)),))
    with FakeAnthropic(script) as fake:
        run_agent(session_for(fake), repo, tmp_path, sub)
    shared, _ = system_texts(fake.requests[0])
    assert AGENTS_MD in shared and COPILOT in shared and SAMPLE_FILES["CLAUDE.md"] in shared


# --- the repo map's budget ---------------------------------------------------------------------------


def many_files() -> dict[str, str]:
    files = {f"src/module_{i:03d}.py": f"x = {i}\n" for i in range(120)}
    files.update({f"docs/page_{i:02d}.md": "page\n" for i in range(30)})
    files["README.md"] = "# big\n"
    return files


def test_the_repo_map_is_trimmed_to_its_budget_with_a_note(tmp_path: Path) -> None:
    files = many_files()
    repo = make_repo(tmp_path / "repo", files)
    budget = 400
    listing = section(plan_once(repo, repo_map_chars=budget), "Repository files").split("\n")
    *shown, note = listing
    assert shown and len("\n".join(shown)) + 1 <= budget  # the paths shown fit the budget
    everything = sorted(git.tree_files(repo, "HEAD"))
    assert shown == everything[: len(shown)]  # a prefix of the sorted file list
    rest = everything[len(shown) :]
    assert note.startswith(f"[... {len(rest)} more files: ")
    # the note counts what was left out, per top directory
    left_docs = sum(p.startswith("docs/") for p in rest)
    assert 0 < left_docs < 30 and len(rest) == left_docs + 120  # cut inside docs/, all of src/ left out
    assert note == f"[... {len(rest)} more files: docs/ ({left_docs}), src/ (120)]"


def test_a_repo_map_within_budget_is_whole_and_has_no_note(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", many_files())
    listing = section(plan_once(repo, repo_map_chars=100_000), "Repository files")
    assert listing.split("\n") == sorted(git.tree_files(repo, "HEAD"))
    assert "more files" not in listing


def test_the_agents_repo_map_follows_the_same_budget(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", many_files())
    sub = Subtask("code", "builder", "Add greet()", "write src/greet.py")
    script = Script(conversations=(Conversation("code", subtask_match("code"), (FINISH,)),))
    with FakeAnthropic(script) as fake:
        run_agent(session_for(fake, repo_map_chars=300), repo, tmp_path, sub)
    shared, _ = system_texts(fake.requests[0])
    listing = section(shared, "Repository files").split("\n")
    assert len("\n".join(listing[:-1])) + 1 <= 300
    assert listing[-1].startswith("[... ") and "more files" in listing[-1]


# --- role prompts from the repository config ---------------------------------------------------------


CONFIG = """\
role_prompts:
  builder: Write the smallest change that works; name things after the domain.
  tester: Start from a failing test.
"""


def run_agent(session: LLMSession, repo: Path, tmp: Path, sub: Subtask) -> None:
    workspace = make_workspace(repo, sub, tmp)

    async def go() -> None:
        try:
            outcome = await claude_backend(session)(AgentSpec("claude")).run(sub, workspace, context())
            assert outcome.ok, outcome.error
        finally:
            await session.aclose()

    arun(go())


def test_a_role_prompt_from_the_config_reaches_the_agents_system_prompt(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SAMPLE_FILES)
    config = config_from_text(CONFIG)
    subs = [
        Subtask("code", "builder", "Add greet()", "write src/greet.py"),
        Subtask("docs", "documenter", "Document greet()", "update docs/index.md"),
    ]
    conversations = tuple(Conversation(s.id, subtask_match(s.id), (FINISH,)) for s in subs)
    with FakeAnthropic(Script(conversations=conversations)) as fake:
        for sub in subs:
            base = settings()
            tuned = LLMSettings.from_config(
                config,
                max_retries=base.max_retries,
                max_concurrency=base.max_concurrency,
                request_timeout=base.request_timeout,
            )
            session = LLMSession(tuned, KEY, fake.base_url)
            run_agent(session, repo, tmp_path, sub)
    roles = {r.conversation: system_texts(r)[1] for r in fake.requests}
    assert (
        roles["code"]
        == "Your role: builder. Write the smallest change that works; name things after the domain."
    )
    assert ROLE_PROMPTS["builder"] not in roles["code"]
    assert roles["docs"] == f"Your role: documenter. {ROLE_PROMPTS['documenter']}"  # not overridden


def test_the_cli_passes_the_repository_role_prompts_to_claude_agents(tmp_path: Path) -> None:
    """`ci-swarm run --task` in a repository whose .github/ci-swarm.yml sets role prompts: the agents'
    requests carry them (the planner's does not: it has no role)."""
    files = {**SAMPLE_FILES, ".github/ci-swarm.yml": CONFIG, "AGENTS.md": AGENTS_MD}
    repo = make_repo(tmp_path / "repo", files)
    with FakeAnthropic(three_subtask_script()) as fake:
        report = str(tmp_path / "r.json")
        proc = run_cli(
            "run", "--task", "add greet()", "--repo", str(repo), "--quiet", "--report", report,
            env=clean_env(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.base_url), timeout=180,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {s["status"] for s in json.loads((tmp_path / "r.json").read_text())["subtasks"]} == {"succeeded"}
    assert "Repository instructions (AGENTS.md)" in planner_brief(fake)
    role_blocks: dict[str, set[str]] = {}
    for record in fake.requests:
        if record.conversation in ("code", "tests", "docs"):
            role_blocks.setdefault(record.conversation, set()).add(system_texts(record)[1])
    assert role_blocks == {
        "code": {"Your role: builder. Write the smallest change that works; name things after the domain."},
        "tests": {"Your role: tester. Start from a failing test."},
        "docs": {f"Your role: documenter. {ROLE_PROMPTS['documenter']}"},
    }
    planner_system = next(r for r in fake.requests if r.conversation == "planner").body
    assert planner_system is not None and "Start from a failing test." not in json.dumps(planner_system)

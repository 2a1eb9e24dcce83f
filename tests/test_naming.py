"""Names and messages ci-swarm writes into git (ci_swarm/naming.py)."""

from __future__ import annotations

from ci_swarm.models import Subtask
from ci_swarm.naming import (
    ROLE_TRAILER,
    RUN_TRAILER,
    TRAILER,
    agent_branch,
    commit_message,
    integration_branch,
)
from ci_swarm.neutral import WORD_JOINER


def test_branch_names_keep_agents_beside_the_integration_branch() -> None:
    assert integration_branch("swarm", "r1") == "swarm/r1"
    assert agent_branch("swarm", "r1", "docs") == "swarm/r1-agents/docs"


def test_commit_message_carries_the_trailers_the_merge_queue_reads() -> None:
    sub = Subtask(id="docs", role="writer", title="Write docs", instructions="Do it.")
    message = commit_message(sub, "r1", "failed")
    assert message.splitlines()[0] == "writer: Write docs [failed]"
    assert f"{TRAILER}: docs\n{ROLE_TRAILER}: writer\n{RUN_TRAILER}: r1\n" in message


def test_untrusted_title_and_instructions_close_no_issue_and_ping_nobody() -> None:
    sub = Subtask(
        id="a",
        role="builder",
        title="Fixes #1\nand more",
        instructions="Closes #2, resolves octo/repo#3; cc @octocat\u202e",
    )
    message = commit_message(sub, "r1")
    title, _, rest = message.partition("\n")
    assert title == f"builder: Fixes #{WORD_JOINER}1 and more"  # one line
    assert "Closes #2" not in rest and "#3" not in rest and "@octocat" not in rest
    assert f"@{WORD_JOINER}octocat" in rest and "\u202e" not in rest

"""Fixtures for the GitHub tests: a fake GitHub serving a real repo, and RunReports built from real commits.

The reports are built the way the engine records them: agent branches committed on top of the base, an
integration branch made of real two-parent merge commits (``git merge-tree`` + ``commit-tree``), and,
where a test wants conflicts, the resolved integration content plus the Conflict records that describe it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import github
import pytest

from ci_swarm import git
from ci_swarm.github.client import RetrySettings
from ci_swarm.github.publish import Publisher, Target
from ci_swarm.merge_only import remerge
from ci_swarm.models import (
    Conflict,
    MergeRecord,
    MergeStatus,
    Request,
    RunReport,
    RunStats,
    SubtaskRecord,
    SubtaskStatus,
    Usage,
)
from ci_swarm.testing.fake_github import FakeGitHub
from tests.fixtures import Files, commit, make_repo
from tests.fixtures.repos import tree_with

TOKEN = "ghs_Fak3T0kenThatMustNeverBePrinted42"
REPO = "octo/app"
FAST_RETRY = RetrySettings(total=3, backoff=0.01, secondary_rate_wait=0.05, max_wait=2.0)
BASE_FILES = {
    "README.md": "# app\n\nintro\n\n## Usage\n\nrun it\n\n## Notes\n\nnone yet\n",
    "src/app.py": "".join(f"line {i}\n" for i in range(1, 41)),
    "src/old.py": "print('old')\n",
}


@dataclass
class Hub:
    fake: FakeGitHub
    work: Path  # the local repository the run happened in
    bare: Path  # the fake's bare copy (the "remote")
    token: str = TOKEN
    name: str = REPO

    def gh(self, token: str | None = None, **kwargs: Any) -> github.Github:
        kwargs.setdefault("seconds_between_requests", None)  # PyGithub paces writes 1 s apart by default
        kwargs.setdefault("seconds_between_writes", None)
        return github.Github(
            auth=github.Auth.Token(token or self.token), base_url=self.fake.base_url, retry=None, **kwargs
        )

    def repo(self) -> Any:
        return self.gh().get_repo(self.name)

    def publisher(self, target: Target | None = None, token: str | None = None, **kwargs: Any) -> Publisher:
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("progress_interval", 0.05)
        kwargs.setdefault("env", {})
        kwargs.setdefault("remerge", remerge)
        return Publisher(self.fake.base_url, token or self.token, target or Target(self.name), **kwargs)

    def remote_sha(self, branch: str) -> str | None:
        return git.try_rev_parse(self.bare, f"refs/heads/{branch}")

    def remote_commit(self, branch: str, files: Files, message: str = "upstream change") -> str:
        """Someone else pushes to ``branch`` of the remote (a commit made directly in the bare repo)."""
        tip = git.rev_parse(self.bare, f"refs/heads/{branch}")
        new = commit(self.bare, tip, files, message)
        git.update_ref(self.bare, f"refs/heads/{branch}", new, tip)
        return new


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    work = make_repo(tmp_path / "work", BASE_FILES)
    with FakeGitHub(tmp_path / "remote") as fake:
        bare = fake.add_repo(REPO, work)
        fake.add_token(TOKEN)
        fake.add_user("octo", "admin")
        yield Hub(fake, work, bare)


# --- merges without a checkout ------------------------------------------------------------------


def merge_commit(repo: Path, tip: str, other: str, message: str, resolved: Files | None = None) -> str:
    """A real two-parent merge of ``other`` into ``tip``; ``resolved`` replaces conflicted paths."""
    merged = git.merge_tree(repo, tip, other)
    tree = tree_with(repo, merged.tree, resolved) if resolved else merged.tree
    return git.commit_tree(repo, tree, [tip, other], message)


# --- run reports ---------------------------------------------------------------------------------


@dataclass
class Agent:
    id: str
    files: Files
    role: str = "builder"
    status: SubtaskStatus = SubtaskStatus.SUCCEEDED
    usage: Usage = field(default_factory=Usage)
    log: str = ""


def make_run(
    work: Path,
    agents: Sequence[Agent],
    *,
    run_id: str = "r1",
    base: str = "main",
    resolved: Mapping[str, Files] | None = None,
    conflicts: Mapping[str, Sequence[Conflict]] | None = None,
    request: Request | None = None,
) -> RunReport:
    """Agent branches + integration merges as real commits in ``work``, and the RunReport for them.

    ``resolved[agent]`` is the integration content after merging that agent (the kept sides), and
    ``conflicts[agent]`` the records of what lost there.
    """
    base_commit = git.rev_parse(work, base)
    integration = f"swarm/{run_id}"
    tip = base_commit
    subs, merges = [], []
    for order, agent in enumerate(agents, 1):
        branch = f"swarm/{run_id}-agents/{agent.id}"
        agent_commit = commit(
            work, base_commit, agent.files, f"{agent.role}: {agent.id}\n\nSwarm-Subtask: {agent.id}\n"
        )
        git.create_branch(work, branch, agent_commit)
        subs.append(
            SubtaskRecord(
                agent.id,
                agent.role,
                f"do {agent.id}",
                agent.status,
                branch=branch,
                start_commit=base_commit,
                commit=agent_commit,
                started_at=1000.0 + order,
                finished_at=1002.0 + order,
                seconds=2.0,
                files=tuple(agent.files),
                log=agent.log or f"agent {agent.id} log\n",
                usage=agent.usage,
            )
        )
        if agent.status is not SubtaskStatus.SUCCEEDED:
            continue
        mine = tuple((conflicts or {}).get(agent.id, ()))
        tip = merge_commit(
            work, tip, agent_commit, f"Merge subtask {agent.id}", (resolved or {}).get(agent.id)
        )
        status = MergeStatus.CONFLICTED if mine else MergeStatus.CLEAN
        merges.append(MergeRecord(agent.id, order, status, tip, (), mine, 0.01))
    git.create_branch(work, integration, tip)
    usage = sum((s.usage for s in subs), Usage())
    return RunReport(
        run_id=run_id,
        task="Add a greeting and its docs",
        repo=str(work),
        base=base_commit,
        integration_branch=integration,
        integration_commit=tip,
        stats=RunStats(4.0, 2.0 * len(subs), 0.5 * len(subs), 2.0, 0.5, 4, len(subs)),
        subtasks=tuple(subs),
        merges=tuple(merges),
        overlap=(),
        usage=usage,
        request=request or Request("Add a greeting and its docs", "issue", 1, "Add a greeting", actor="octo"),
    )


def open_issue(hub: Hub, title: str = "Add a greeting", body: str = "please") -> int:
    return int(hub.repo().create_issue(title=title, body=body).number)

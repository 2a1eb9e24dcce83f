"""The fake GitHub's state: repositories (real bare git repos), issues, pulls, comments, reviews.

Mutable on purpose (it is a server's store), guarded by one lock held by the HTTP layer around each
request. Issues and pull requests share one number sequence per repository, as on GitHub.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
ROLE_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
SCOPES = ("contents", "issues", "pull_requests")
BOT_LOGIN = "github-actions[bot]"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # User | Bot
    role: str = "none"  # admin | maintain | write | triage | read | none (on every repo)
    member: str = ""  # "public" or "private" membership of the organisation owning the repos; "" none
    contributor: bool = False  # has commits in the repository (CONTRIBUTOR when nothing closer applies)


@dataclass
class Token:
    """An access token: who it is and what it may write (per scope: "write", "read" or "none")."""

    value: str
    login: str
    permissions: dict[str, str] = field(default_factory=lambda: dict.fromkeys(SCOPES, "write"))
    actions: bool = True  # an Actions GITHUB_TOKEN (subject to "Actions may not create PRs")


@dataclass
class Reaction:
    id: int
    user: str
    content: str
    created_at: float


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Comment:
    id: int
    issue: int
    user: str
    body: str
    created_at: float
    updated_at: float
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class Pull:
    head_ref: str
    base_ref: str
    head_sha: str  # last known (kept when the branch is deleted)
    base_sha: str
    head_repo: str  # full name of the head repository (another one for a pull request from a fork)
    draft: bool = False
    maintainer_can_modify: bool = False
    pending_sha: str = ""  # a pushed head not shown yet (head_sha_delay), and since when (monotonic)
    pending_since: float = 0.0


@dataclass
class Issue:
    number: int
    title: str
    body: str | None
    user: str
    created_at: float
    updated_at: float
    state: str = "open"
    closed_at: float | None = None
    labels: list[str] = field(default_factory=list)
    reactions: list[Reaction] = field(default_factory=list)
    pull: Pull | None = None


@dataclass
class Review:
    id: int
    pull: int
    user: str
    body: str
    state: str  # PENDING | COMMENTED | APPROVED | CHANGES_REQUESTED
    commit_id: str
    submitted_at: float


@dataclass
class ReviewComment:
    id: int
    review_id: int
    pull: int
    user: str
    body: str
    path: str
    commit_id: str
    diff_hunk: str
    line: int | None
    side: str | None
    start_line: int | None
    start_side: str | None
    position: int | None
    subject_type: str
    created_at: float
    in_reply_to: int | None = None


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    path: Path  # the bare repository on disk
    default_branch: str
    created_at: float
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    reviews: dict[int, Review] = field(default_factory=dict)
    review_comments: dict[int, ReviewComment] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    parent: str | None = None  # full name of the repository this one is a fork of

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Settings:
    actions_can_create_prs: bool = True
    anonymous_reads: bool = True
    head_sha_delay: float = 0.0  # seconds before a pushed commit shows as a PR's head.sha (pulls.py)


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.settings = Settings()
        self._ids = itertools.count(1001)

    def next_id(self) -> int:
        return next(self._ids)

    def user(self, login: str, *, type: str = "User", role: str | None = None) -> User:
        """The user ``login``, created on first mention (bots get type Bot)."""
        known = self.users.get(login)
        if known is None:
            kind = "Bot" if login.endswith("[bot]") else type
            known = self.users[login] = User(login, self.next_id(), kind)
        if role is not None:
            known.role = role
        return known

    def association(self, repo: Repo, login: str) -> str:
        """``author_association`` as github.com sends it: OWNER; MEMBER for a public member of the owning
        organisation, whatever their permission (read too); COLLABORATOR for anyone else with a role;
        CONTRIBUTOR for someone with commits (a private member without a role of their own shows so); else
        NONE (bots: always NONE, even with access)."""
        if login.lower() == repo.owner.lower():
            return "OWNER"
        who = self.user(login)
        if who.type == "Bot":
            return "NONE"
        if who.member == "public":
            return "MEMBER"
        if who.role in ROLE_PERMISSION and not who.member:
            return "COLLABORATOR"
        return "CONTRIBUTOR" if who.contributor or who.member == "private" else "NONE"

    def repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get(f"{owner}/{name}".lower())

    def source(self, repo: Repo) -> Repo:
        """The root of ``repo``'s fork network (``repo`` itself when it is not a fork)."""
        while repo.parent is not None and repo.parent.lower() in self.repos:
            repo = self.repos[repo.parent.lower()]
        return repo

    def fork_of(self, repo: Repo, owner: str) -> Repo | None:
        """``owner``'s repository in ``repo``'s fork network (what ``owner:branch`` names in a PR head)."""
        if owner.lower() == repo.owner.lower():
            return repo
        root = self.source(repo)
        for candidate in self.repos.values():
            if candidate.owner.lower() == owner.lower() and self.source(candidate) is root:
                return candidate
        return None

    def head_repo(self, repo: Repo, pull: Pull) -> Repo:
        """Where ``pull``'s head branch lives (``repo`` for a same-repository pull request)."""
        return self.repos.get(pull.head_repo.lower(), repo)

    def comment(self, repo: Repo, comment_id: int) -> Comment | None:
        return repo.comments.get(comment_id)

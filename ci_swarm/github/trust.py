"""The action's GitHub side: the PyGithub-backed :class:`ci_swarm.github.event.RepoAccess` (collaborator
permission by role name, the token's own login, pull requests) and :class:`ActionGitHub`, the few calls
the action makes itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from github import Github, GithubException
from github.Repository import Repository

from ci_swarm.config import PERMISSIONS
from ci_swarm.errors import ForgeError
from ci_swarm.github.client import forge_call, make_github
from ci_swarm.github.event import PullRequestInfo
from ci_swarm.github.publish import Publisher, Target
from ci_swarm.github.pushing import fetch_tip
from ci_swarm.ports import Remerge

ROLES = frozenset(PERMISSIONS)


class GithubAccess:
    """Answers routing's two questions through the REST API (``GET …/collaborators/{user}/permission``,
    ``GET …/pulls/{number}``). PyGithub errors become :class:`ForgeError` here."""

    def __init__(self, repo: Repository, gh: Github) -> None:
        self._repo = repo
        self._gh = gh

    def permission(self, login: str) -> str:
        """The role name (``maintain`` and ``triage`` are told apart, which the legacy ``permission`` field
        does not do); a custom role counts as its base permission. Not a user (404): ``none``."""
        try:
            role = str(self._repo.get_collaborator_role_name(login))
            if role in ROLES:
                return role
            return str(self._repo.get_collaborator_permission(login))
        except GithubException as exc:
            if exc.status == 404:
                return "none"  # not a user GitHub knows (or a bot): no access
            raise ForgeError(
                f"cannot read @{login}'s permission on {self._repo.full_name}: {_why(exc)}"
            ) from exc

    def identity(self) -> str:
        """The token's login (``GET /user``); "" when GitHub does not say (GITHUB_TOKEN: 403)."""
        try:
            return str(self._gh.get_user().login)
        except GithubException:
            return ""

    def pull_request(self, number: int) -> PullRequestInfo:
        try:
            pr = self._repo.get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else ""
            return PullRequestInfo(
                number=pr.number,
                title=pr.title or "",
                body=pr.body or "",
                state=pr.state,
                merged=bool(pr.merged),
                head_ref=pr.head.ref,
                head_sha=pr.head.sha,
                head_repo=head_repo,
                base_ref=pr.base.ref,
                base_sha=pr.base.sha,
            )
        except GithubException as exc:
            raise ForgeError(
                f"cannot read pull request #{number} of {self._repo.full_name}: {_why(exc)}"
            ) from exc


def _why(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    message = data.get("message") or exc.message or ""
    return f"HTTP {exc.status} {message}".strip()


class ActionGitHub:
    """The repository as the action sees it: the trust questions (:attr:`access`), the few calls the action
    makes itself (reply, remove the label, fetch a branch), and the
    :class:`~ci_swarm.github.publish.Publisher` for each job. One PyGithub client, created once."""

    def __init__(
        self, api_url: str, token: str, full_name: str, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.api_url = api_url
        self.token = token
        self.full_name = full_name
        self._env = env
        self.gh = make_github(token, api_url)
        self._repo: Repository | None = None

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            with forge_call(f"reading the repository {self.full_name}", self.token):
                self._repo = self.gh.get_repo(self.full_name)
        return self._repo

    @property
    def access(self) -> GithubAccess:
        return GithubAccess(self.repo, self.gh)

    def default_branch(self) -> str:
        return str(self.repo.default_branch)

    def comment(self, number: int, body: str) -> None:
        with forge_call(f"commenting on #{number} of {self.full_name}", self.token):
            self.repo.get_issue(number).create_comment(body)

    def remove_label(self, number: int, label: str) -> None:
        """Remove ``label`` from the issue; already gone is fine (GitHub answers 404 "Label does not exist",
        which PyGithub raises as a plain GithubException, not UnknownObjectException)."""
        try:
            self.repo.get_issue(number).remove_from_labels(label)
        except GithubException as exc:
            if exc.status == 404:
                return
            raise ForgeError(f"removing the label {label!r} from #{number}: {_why(exc)}") from exc

    def fetch(self, repo: Path, branch: str) -> str:
        """Fetch ``branch`` from the repository's clone URL (with the token); its commit."""
        return fetch_tip(repo, self.repo.clone_url, branch, self.token)

    def publisher(
        self, target: Target, *, branch_template: str, remerge: Remerge, base_branch: str | None = None
    ) -> Publisher:
        return Publisher(
            self.api_url,
            self.token,
            target,
            branch_template=branch_template,
            base_branch=base_branch,
            remerge=remerge,
            env=self._env,
            client=self.gh,
        )

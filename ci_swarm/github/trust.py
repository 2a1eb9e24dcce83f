"""The action's GitHub side: the PyGithub-backed :class:`ci_swarm.github.event.RepoAccess` (collaborator
permission, pull requests) and :class:`ActionGitHub`, the few calls the action makes itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from github import GithubException, UnknownObjectException
from github.Repository import Repository

from ci_swarm.errors import ForgeError
from ci_swarm.github.client import forge_call, make_github
from ci_swarm.github.event import PullRequestInfo
from ci_swarm.github.publish import Publisher, Target
from ci_swarm.github.pushing import fetch_tip
from ci_swarm.ports import Remerge


class GithubAccess:
    """Answers routing's two questions through the REST API (``GET …/collaborators/{user}/permission``,
    ``GET …/pulls/{number}``). PyGithub errors become :class:`ForgeError` here."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def permission(self, login: str) -> str:
        try:
            return str(self._repo.get_collaborator_permission(login))
        except GithubException as exc:
            if exc.status == 404:
                return "none"  # not a user GitHub knows: no access
            raise ForgeError(
                f"cannot read @{login}'s permission on {self._repo.full_name}: {_why(exc)}"
            ) from exc

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
        return GithubAccess(self.repo)

    def default_branch(self) -> str:
        return str(self.repo.default_branch)

    def comment(self, number: int, body: str) -> None:
        with forge_call(f"commenting on #{number} of {self.full_name}", self.token):
            self.repo.get_issue(number).create_comment(body)

    def remove_label(self, number: int, label: str) -> None:
        """Remove ``label`` from the issue; already gone is fine."""
        try:
            self.repo.get_issue(number).remove_from_labels(label)
        except UnknownObjectException:
            return
        except GithubException as exc:
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

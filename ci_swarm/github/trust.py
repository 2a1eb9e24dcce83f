"""The PyGithub-backed :class:`ci_swarm.github.event.RepoAccess`: collaborator permission, pull requests."""

from __future__ import annotations

from github import GithubException, UnknownObjectException
from github.Repository import Repository

from ci_swarm.errors import ForgeError
from ci_swarm.github.event import PullRequestInfo


class GithubAccess:
    """Answers routing's two questions through the REST API (``GET …/collaborators/{user}/permission``,
    ``GET …/pulls/{number}``). PyGithub errors become :class:`ForgeError` here."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def permission(self, login: str) -> str:
        try:
            return str(self._repo.get_collaborator_permission(login))
        except UnknownObjectException:
            return "none"  # not a user GitHub knows: no access
        except GithubException as exc:
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

"""Who may start ci-swarm, and whose text it trusts: one verdict per login, by repository permission.

A person is admitted when their permission on the repository (the collaborator-permission API, as a role
name: ``read`` < ``triage`` < ``write`` < ``maintain`` < ``admin``) reaches the config's ``min_permission``.
``author_association`` is never asked: org members with read access arrive as ``MEMBER``, members whose
membership is private as ``CONTRIBUTOR``. A bot is admitted only when ``allowed_bots`` names it
(``dependabot`` and ``dependabot[bot]`` are the same bot); the permission API is never asked about bots (it
answers 404 "… is not a user" for them). ci-swarm's own identity (``github-actions[bot]``, or whatever login
the token has) is never admitted. A refused person gets a short reply; a refused bot gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ci_swarm.config import PERMISSIONS, Config

ACTIONS_BOT = "github-actions[bot]"  # who GITHUB_TOKEN writes as
_RANK = {name: rank for rank, name in enumerate(("none", *PERMISSIONS))}


class Permissions(Protocol):
    """What a verdict needs from GitHub."""

    def permission(self, login: str) -> str:
        """``admin``, ``maintain``, ``write``, ``triage``, ``read`` or ``none``."""
        ...

    def identity(self) -> str:
        """The login the token acts as; "" when GitHub does not say (GITHUB_TOKEN cannot read ``/user``)."""
        ...


@dataclass(frozen=True)
class Verdict:
    """``admitted``, or why not: ``why`` is one line for the log, ``reply`` (people only) one for GitHub."""

    admitted: bool
    why: str
    reply: str | None = None


def meets(permission: str, minimum: str) -> bool:
    """Whether ``permission`` is at least ``minimum`` (unknown names count as none)."""
    return _RANK.get(permission.lower(), 0) >= _RANK.get(minimum.lower(), len(_RANK))


def is_bot(login: str, kind: str) -> bool:
    return kind == "Bot" or login.lower().endswith("[bot]")


def bot_name(login: str) -> str:
    """``Dependabot[bot]`` → ``dependabot``: how ``allowed_bots`` entries and bot logins are compared."""
    return login.strip().lower().removesuffix("[bot]")


def bot_allowed(login: str, allowed: tuple[str, ...]) -> bool:
    return bot_name(login) in {bot_name(name) for name in allowed}


@dataclass
class Gate:
    """Verdicts for one event: each login's permission and the token's identity are asked at most once."""

    config: Config
    access: Permissions
    _permissions: dict[str, str] = field(default_factory=dict)
    _own: frozenset[str] | None = None

    def own_logins(self) -> frozenset[str]:
        if self._own is None:
            self._own = frozenset(x.lower() for x in (ACTIONS_BOT, self.access.identity()) if x)
        return self._own

    def permission(self, login: str) -> str:
        if login not in self._permissions:
            self._permissions[login] = self.access.permission(login)
        return self._permissions[login]

    def judge(self, login: str, kind: str) -> Verdict:
        """The verdict on ``login`` (of GitHub user type ``kind``) for this repository."""
        bot = is_bot(login, kind)
        if bot and not bot_allowed(login, self.config.allowed_bots):
            return Verdict(False, f"@{login} is a bot not listed in allowed_bots: ignored")
        if login.lower() in self.own_logins():
            return Verdict(False, f"@{login} is ci-swarm's own identity: ignored")
        if bot:
            return Verdict(True, f"@{login} is a bot listed in allowed_bots")
        minimum = self.config.min_permission
        permission = self.permission(login)
        if meets(permission, minimum):
            return Verdict(True, f"@{login} has {permission} access")
        reply = (
            f"ci-swarm runs only for collaborators with {minimum} access or more to this repository "
            f"(@{login}: {permission}), so it did nothing. A maintainer can start it instead."
        )
        return Verdict(False, f"@{login} has '{permission}' permission, not {minimum} access: refused", reply)

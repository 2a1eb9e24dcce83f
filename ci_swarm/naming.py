"""Names ci-swarm gives things in git: run ids, branch names, commit trailers and agent identities.

Every module that creates or reads a swarm branch or trailer takes its spelling from here, so the merge
queue, the orchestrator, publishing and clean-up always agree.
"""

from __future__ import annotations

import re
import secrets
import time

from ci_swarm import git
from ci_swarm.errors import UsageError
from ci_swarm.models import Subtask
from ci_swarm.neutral import clean, defuse, plain

TRAILER = "Swarm-Subtask"
ROLE_TRAILER = "Swarm-Role"
RUN_TRAILER = "Swarm-Run"


def new_run_id() -> str:
    """A fresh run id: UTC time to the second plus four hex digits (sorts by start time)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def ref_problem(name: str, *, slashes: bool = True) -> str:
    """Which of git's ref-name rules (``git check-ref-format``) ``name`` breaks, in words, or ``""``.
    With ``slashes=False`` the name must be one component (a run id: ``swarm/<run-id>`` is a branch and
    ``swarm/<run-id>-agents/<id>`` holds its agents)."""
    bad = _FORBIDDEN.search(name)
    rules = (
        (not name, "it is empty"),
        (bad is not None, f"it contains {bad.group(0)!r}" if bad else ""),
        (not slashes and "/" in name, "it contains '/' (a run id is one path component)"),
        (".." in name, "it contains '..'"),
        ("@{" in name, "it contains '@{'"),
        (name == "@", "it is '@'"),
        ("//" in name or name.startswith("/") or name.endswith("/"), "it has an empty component"),
        (name.endswith("."), "it ends with '.'"),
        (any(part.startswith(".") for part in name.split("/")), "a component starts with '.'"),
        (any(part.endswith(".lock") for part in name.split("/")), "a component ends with '.lock'"),
    )
    return next((why for broken, why in rules if broken), "")


def check_run_id(run_id: str) -> str:
    """``run_id`` if git can name branches after it, else a UsageError naming the rule it breaks."""
    why = ref_problem(run_id, slashes=False)
    if why:
        raise UsageError(f"run id {run_id!r} cannot name a git branch: {why}")
    return run_id


def check_branch_prefix(prefix: str) -> str:
    """``prefix`` if git can name branches under it, else a UsageError naming the rule it breaks."""
    why = ref_problem(prefix)
    if why:
        raise UsageError(f"branch prefix {prefix!r} cannot name a git branch: {why}")
    return prefix


def integration_branch(prefix: str, run_id: str) -> str:
    return f"{prefix}/{run_id}"


def agent_branch(prefix: str, run_id: str, subtask_id: str) -> str:
    """``<prefix>/<run>-agents/<id>``: git cannot hold refs/heads/swarm/<run> and refs/heads/swarm/<run>/<id>
    at once (a ref is not a directory of refs), so agent branches sit beside the integration branch."""
    return f"{prefix}/{run_id}-agents/{subtask_id}"


def commit_message(sub: Subtask, run_id: str, note: str = "") -> str:
    """The message of an agent's commit: role and title (with a ``[note]`` for partial work), the
    instructions, and the trailers the merge queue reads back. Title and instructions are untrusted text
    (plans come from issues and the model): mentions and closing references are defused, so merging the
    pull request never closes an issue nobody asked ci-swarm to close."""
    title = plain(f"{sub.role}: {sub.title or sub.id}")
    if note:
        title = f"{title} [{note}]"
    body = defuse(clean(sub.instructions)).strip()
    trailers = f"{TRAILER}: {sub.id}\n{ROLE_TRAILER}: {sub.role}\n{RUN_TRAILER}: {run_id}"
    return f"{title}\n\n{body}\n\n{trailers}\n" if body else f"{title}\n\n{trailers}\n"


def agent_identity(sub: Subtask) -> git.Identity:
    """The author and committer of an agent's commit."""
    return git.Identity(f"ci-swarm {sub.role} ({sub.id})", git.SWARM_EMAIL)

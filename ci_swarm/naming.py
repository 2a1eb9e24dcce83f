"""Names ci-swarm gives things in git: run ids, branch names, commit trailers and agent identities.

Every module that creates or reads a swarm branch or trailer takes its spelling from here, so the merge
queue, the orchestrator, publishing and clean-up always agree.
"""

from __future__ import annotations

import secrets
import time

from ci_swarm import git
from ci_swarm.models import Subtask
from ci_swarm.neutral import clean, defuse, plain

TRAILER = "Swarm-Subtask"
ROLE_TRAILER = "Swarm-Role"
RUN_TRAILER = "Swarm-Run"


def new_run_id() -> str:
    """A fresh run id: UTC time to the second plus four hex digits (sorts by start time)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


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

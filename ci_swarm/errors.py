"""One base error with exit codes; every failure ci-swarm reports is one of these.

::

    SwarmError (exit 1: internal / unexpected state)
    ├── UsageError        (exit 4)  bad input: plan, config, CLI arguments, event payload
    │   ├── PlanError               invalid plan (ids, deps, cycles, paths)
    │   ├── ConfigError             invalid .github/ci-swarm.yml
    │   └── RunStateError           a fan-out run's state: missing, malformed or of another format
    │       ├── NoRunState          no state recorded for that run id
    │       └── RunStateFormat      written by a ci-swarm with another state format
    ├── RepoError         (exit 4)  not a git repo, unknown base, branch already exists
    ├── PathEscapeError   (exit 4)  a path leaving an agent's worktree (or under .git/)
    ├── GitError          (exit 5)  a git command failed (command, exit code, output)
    ├── LLMError          (exit 6)  the model API failed (auth, exhausted retries, bad output)
    ├── ForgeError        (exit 7)  the GitHub API or a push failed
    ├── SecretFound       (exit 7)  a commit to be pushed holds a secret (named by place, never value)
    ├── WorkLeftOut       (exit 3)  an agent left files git cannot hold: the rest is committed, they are named
    └── Interrupted       (exit 130) Ctrl-C / SIGTERM

Exit codes of a completed run (see README):

    0  success: every subtask succeeded and merged cleanly
    2  success with conflicts recorded (all work kept; see the report)
    3  some subtasks failed, timed out, were skipped or cancelled
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ci_swarm.models import RunReport
    from ci_swarm.secretscan import Finding

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFLICTS = 2
EXIT_FAILED_SUBTASKS = 3
EXIT_BAD_INPUT = 4
EXIT_GIT = 5
EXIT_LLM = 6
EXIT_FORGE = 7
EXIT_INTERRUPTED = 130


class SwarmError(Exception):
    """Base of every error ci-swarm raises on purpose. ``str(err)`` is one line."""

    exit_code = EXIT_INTERNAL

    def __str__(self) -> str:
        text = super().__str__()
        return " ".join(text.split()) if "\n" in text else text


class UsageError(SwarmError):
    exit_code = EXIT_BAD_INPUT


class PlanError(UsageError):
    pass


class ConfigError(UsageError):
    pass


class RunStateError(UsageError):
    """A fan-out run's state (``refs/swarm/<run-id>/state``) cannot be used: malformed."""


class NoRunState(RunStateError):
    """No state is recorded for the run id (not planned with ``--fan-out``, or its ref not fetched)."""


class RunStateFormat(RunStateError):
    """The state was written by a ci-swarm whose state format this one does not read."""


class RepoError(SwarmError):
    exit_code = EXIT_BAD_INPUT


class PathEscapeError(SwarmError):
    exit_code = EXIT_BAD_INPUT


class GitError(SwarmError):
    """A git command failed. Carries the command, exit code and output (secrets redacted)."""

    exit_code = EXIT_GIT

    def __init__(self, argv: tuple[str, ...], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip().splitlines()
        last = detail[-1] if detail else ""
        super().__init__(f"`git {' '.join(argv)}` exited {returncode}: {last}".rstrip(": "))


class LLMError(SwarmError):
    exit_code = EXIT_LLM


class ForgeError(SwarmError):
    exit_code = EXIT_FORGE


class SecretFound(SwarmError):
    """A commit about to be pushed contains a secret; nothing was pushed. Carries the findings (commit,
    file, line, kind), never a value; the message is one line naming the first few places.

    Exit 7, like ForgeError, because it is a publishing failure: the run itself completed and its work is
    kept on the local branches, and callers already read 7 as "the work was not (fully) published". Not 4,
    which promises that bad input stopped the run before anything ran. Not a ForgeError subclass, so the
    publisher's retry paths for API and push failures never retry it: pushing again cannot help.
    """

    exit_code = EXIT_FORGE

    def __init__(self, message: str, findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class WorkLeftOut(SwarmError):
    """Part of an agent's work could not be committed (a path git refuses, a nested repository, a file inside
    a submodule, an encoding or filter error): ``tip`` holds the rest, ``left_out`` names what is missing.
    The subtask fails; the message is one line naming the paths."""

    exit_code = EXIT_FAILED_SUBTASKS

    def __init__(self, tip: str, files: tuple[str, ...], left_out: tuple[str, ...]) -> None:
        shown = ", ".join(left_out[:8]) + (f" and {len(left_out) - 8} more" if len(left_out) > 8 else "")
        super().__init__(f"{len(left_out)} path(s) of the agent's work could not be committed: {shown}")
        self.tip = tip
        self.files = files
        self.left_out = left_out


class Interrupted(SwarmError):
    exit_code = EXIT_INTERRUPTED


def exit_code(report: RunReport) -> int:
    """A completed run's exit code: 0 success · 2 conflicts recorded (a side lost by the policy: none when
    an agent's repair landed for every conflict) · 3 some subtasks did not succeed, or the integration's
    checks failed (verification ``failed``: nothing could be set aside that makes them pass) · 130
    interrupted."""
    if report.interrupted:
        return EXIT_INTERRUPTED
    if report.failed or report.verification.status == "failed":
        return EXIT_FAILED_SUBTASKS
    if report.unrepaired_conflicts:
        return EXIT_CONFLICTS
    return EXIT_OK

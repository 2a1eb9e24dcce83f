"""The sandbox, exercised for real: the ``user`` backend creates and uses its dedicated accounts (this
machine and CI run as root — when the account cannot be made these tests fail, they never skip)."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ci_swarm import sandbox
from ci_swarm.errors import UsageError
from ci_swarm.sandbox import (
    LINE_LIMIT,
    NO_SANDBOX,
    SANE_PATH,
    Capture,
    Lines,
    ProcessResult,
    ProcessSpec,
    SandboxPolicy,
    ensure_account,
    prepare_dir,
    reclaim_dir,
    resolve_policy,
    run,
)

USER = SandboxPolicy()
NONE = SandboxPolicy(backend="none")
SECRETS = {
    "GITHUB_TOKEN": "ghs_sandboxTestSecret0123456789",
    "DATABASE_URL": "postgres://u:pw-sandbox-secret@h/db",
    "OPENAI_API_KEY": "sk-sandbox-secret-openai",
}
# Starts a child with setsid (it leaves the process group), waits until the child wrote its pid.
SETSID_CHILD = (
    'setsid sh -c "echo \\$\\$ > child.pid; exec sleep 1000" & '
    "while [ ! -s child.pid ]; do sleep 0.05; done; echo ready; "
)


def alive(pid: int) -> bool:
    """Running: /proc has it and it is not a zombie (this container's init does not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def running_as(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            if int(uid_line.split()[1]) == uid:
                pids.append(int(entry.name))
    return pids


def go(spec: ProcessSpec, policy: SandboxPolicy = USER, **kwargs: object) -> ProcessResult:
    return asyncio.run(run(spec, policy, **kwargs))  # type: ignore[arg-type]


def sh(script: str, cwd: Path, **kwargs: object) -> ProcessSpec:
    return ProcessSpec(argv=("sh", "-c", script), cwd=cwd, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def work(open_dir: Path) -> Path:
    path = open_dir / "work"
    path.mkdir()
    return path


# ── environment and isolation ───────────────────────────────────────────────────────────────────────

ORCHESTRATOR = """
import json, sys
from pathlib import Path
from ci_swarm.sandbox import ProcessSpec, SandboxPolicy, run_blocking
backend, cwd, other = sys.argv[1:4]
script = (
    'env; echo "--ppid"; tr "\\\\0" "\\\\n" < /proc/$PPID/environ; '
    'echo "--other"; tr "\\\\0" "\\\\n" < /proc/' + other + '/environ; echo "--end"'
)
result = run_blocking(ProcessSpec(argv=("sh", "-c", script), cwd=Path(cwd)), SandboxPolicy(backend=backend))
print(json.dumps({"output": result.output, "account": result.account, "unsandboxed": result.unsandboxed}))
"""


def orchestrate(backend: str, cwd: Path) -> dict[str, object]:
    """Run the sandbox from a separate orchestrator process whose exec-time environment holds the secrets
    (what ``/proc/<pid>/environ`` shows; ``os.environ`` changes never reach it)."""
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", ORCHESTRATOR, backend, str(cwd), str(os.getpid())],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_user_backend_sees_no_secret_and_cannot_read_the_orchestrators_environ(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    result = orchestrate("user", work)
    output = str(result["output"])
    for value in SECRETS.values():
        assert value not in output
    own_env, rest = output.split("--ppid\n")
    ppid_part, other_part = rest.split("--other\n")
    assert "Permission denied" in ppid_part
    assert "Permission denied" in other_part
    assert "PATH=" + SANE_PATH in own_env.splitlines()
    assert result["account"] != "root"
    assert result["unsandboxed"] is False


def test_without_the_sandbox_the_same_process_reads_the_secrets(work: Path) -> None:
    """The control for the test above: as the orchestrator's own user the exec-time environment of the
    parent is readable (so the refusal above is the sandbox's doing); the allow-listed env still holds
    no secret."""
    result = orchestrate("none", work)
    output = str(result["output"])
    own_env, rest = output.split("--ppid\n")
    assert SECRETS["GITHUB_TOKEN"] in rest.split("--other\n")[0]
    for value in SECRETS.values():
        assert value not in own_env
    assert result["unsandboxed"] is True


@pytest.mark.parametrize("policy", [USER, NONE], ids=["user", "none"])
def test_environment_is_exactly_the_allow_list_plus_the_callers(
    policy: SandboxPolicy, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    spec = ProcessSpec(argv=("env",), cwd=work, env={"AGENT_MODE": "fast"})
    result = go(spec, policy)
    variables = dict(line.split("=", 1) for line in result.output.splitlines())
    variables.pop(sandbox.RUN_TOKEN, None)  # the none backend's marker for its kill policy
    assert set(variables) == {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TERM", "AGENT_MODE"}
    assert variables["TERM"] == "dumb"
    assert variables["AGENT_MODE"] == "fast"
    assert variables["PATH"] == SANE_PATH
    assert result.ok
    assert not Path(variables["HOME"]).exists()  # the per-process HOME is removed afterwards
    assert Path(variables["HOME"]).parent == Path(variables["TMPDIR"]).parent


def test_home_and_tmpdir_belong_to_the_sandbox_account(work: Path) -> None:
    result = go(sh('stat -c %U "$HOME" "$TMPDIR"; touch "$HOME/x" "$TMPDIR/y" && echo WROTE; id -u', work))
    owner_home, owner_tmp, wrote, uid = result.output.split()
    assert owner_home == owner_tmp == result.account
    assert wrote == "WROTE"
    assert int(uid) == pwd.getpwnam(result.account).pw_uid != 0


def test_cannot_touch_the_runners_files_or_the_users_repository(open_dir: Path, work: Path) -> None:
    runner_file = open_dir / "GITHUB_ENV"
    runner_file.write_text("SECRET_FROM_RUNNER=1\n")
    runner_file.chmod(0o600)
    repo = open_dir / "repo"
    repo.mkdir(mode=0o700)
    (repo / "private.txt").write_text("private-repo-content\n")
    public = open_dir / "public.txt"
    public.write_text("public-content\n")
    public.chmod(0o644)
    env = {"RUNNER_FILE": str(runner_file), "REPO": str(repo), "OPEN": str(open_dir)}
    script = (
        'cat "$OPEN/public.txt"; '
        'echo "PWNED=1" >> "$RUNNER_FILE" && echo APPENDED; cat "$RUNNER_FILE"; '
        'ls "$REPO"; cat "$REPO/private.txt"; touch "$OPEN/new" && echo CREATED; '
        "echo ok > out.txt && echo WORKDIR-WRITTEN"
    )
    result = go(sh(script, work, env=env, writable_dirs=(work,)))
    assert "public-content" in result.output  # the parent is reachable: the refusals are the modes'
    assert "APPENDED" not in result.output
    assert "SECRET_FROM_RUNNER" not in result.output
    assert runner_file.read_text() == "SECRET_FROM_RUNNER=1\n"
    assert "private.txt" not in result.output.splitlines()  # ls listed nothing
    assert "private-repo-content" not in result.output
    assert "CREATED" not in result.output
    assert not (open_dir / "new").exists()
    assert "WORKDIR-WRITTEN" in result.output
    # the workdir is given back to the orchestrator
    for path in (work, work / "out.txt"):
        assert path.stat().st_uid == os.geteuid()
    assert (work / "out.txt").read_text() == "ok\n"


def test_prepare_and_reclaim_never_give_away_foreign_files(open_dir: Path, work: Path) -> None:
    account = ensure_account(USER.account_name(0))
    outside = open_dir / "outside.txt"
    outside.write_text("x")
    os.link(outside, work / "linked.txt")  # a hard link to a file outside the tree
    (work / "own.txt").write_text("y")
    os.symlink(outside, work / "symlink")
    prepare_dir(work, account)
    assert (work / "own.txt").stat().st_uid == account.uid
    assert (work / "symlink").lstat().st_uid == account.uid
    assert outside.stat().st_uid == os.geteuid()  # neither the link nor the symlink gave it away
    reclaim_dir(work, account)
    assert (work / "own.txt").stat().st_uid == os.geteuid()
    assert (work / "symlink").lstat().st_uid == os.geteuid()
    assert stat.S_IMODE(work.stat().st_mode) & 0o700 == 0o700


# ── the kill policy ─────────────────────────────────────────────────────────────────────────────────


# an account pool of its own (one account), so no other test's process can hold the uid checked below
KILL_TEST = SandboxPolicy(user="ci-swarm-test-kill", pool_size=1)


@pytest.mark.parametrize("policy", [KILL_TEST, NONE], ids=["user", "none"])
def test_a_setsid_child_is_killed_at_the_timeout(policy: SandboxPolicy, work: Path) -> None:
    result = go(sh(SETSID_CHILD + "exec sleep 1000", work, timeout=5, writable_dirs=(work,)), policy)
    assert "ready" in result.output
    assert result.timed_out
    assert result.returncode is None
    assert result.signal is not None
    child = int((work / "child.pid").read_text())
    assert not alive(child)
    if not policy.unsandboxed:
        assert running_as(pwd.getpwnam(result.account).pw_uid) == []


@pytest.mark.parametrize("policy", [USER, NONE], ids=["user", "none"])
def test_exit_zero_with_a_setsid_child_holding_the_pipe_finishes_with_the_main_process(
    policy: SandboxPolicy, work: Path
) -> None:
    result = go(sh(SETSID_CHILD + "echo main-done", work, timeout=300, writable_dirs=(work,)), policy)
    assert result.returncode == 0
    assert not result.timed_out
    assert result.ok
    assert "main-done" in result.output
    assert not alive(int((work / "child.pid").read_text()))


def test_stop_ends_the_tree_and_returns_the_output_so_far(work: Path) -> None:
    lines: list[str] = []

    async def main() -> ProcessResult:
        stop = asyncio.Event()

        def on_line(line: str) -> None:
            lines.append(line)
            if line == "ready":
                stop.set()

        spec = sh(SETSID_CHILD + "exec sleep 1000", work, timeout=300, writable_dirs=(work,))
        return await run(spec, USER, on_line=on_line, stop=stop)

    result = asyncio.run(main())
    assert result.cancelled
    assert not result.timed_out
    assert "ready" in lines
    assert "ready" in result.output
    assert not alive(int((work / "child.pid").read_text()))


def test_cancelling_the_task_ends_the_tree_and_reraises(work: Path) -> None:
    async def main() -> None:
        spec = sh(SETSID_CHILD + "exec sleep 1000", work, timeout=300)
        task = asyncio.create_task(run(spec, USER))
        while not (work / "child.pid").exists() or not (work / "child.pid").read_text().strip():
            await asyncio.sleep(0.05)
        task.cancel()
        await task

    work.chmod(0o777)  # not handed over: the child writes its pid file through the mode
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert not alive(int((work / "child.pid").read_text()))


def test_concurrent_processes_get_distinct_accounts_and_one_ending_spares_the_other(open_dir: Path) -> None:
    flags = open_dir / "flags"
    flags.mkdir()
    flags.chmod(0o777)
    released = open_dir / "released"

    async def main() -> tuple[ProcessResult, ProcessResult]:
        wait_for_release = (
            f'id -u; touch {flags}/a; while [ ! -e "{released}" ]; do sleep 0.05; done; echo A-done'
        )
        a = asyncio.create_task(run(sh(wait_for_release, open_dir, timeout=120), USER))
        while not (flags / "a").exists():
            await asyncio.sleep(0.05)
        b = await run(sh("id -u; setsid sleep 1000 & echo B-done", open_dir, timeout=120), USER)
        released.touch()  # only after B's run ended, and killed every process of B's account
        return await a, b

    a, b = asyncio.run(main())
    assert a.account != b.account
    assert a.output.split()[0] != b.output.split()[0]
    assert "B-done" in b.output
    assert a.returncode == 0
    assert "A-done" in a.output


# ── output ──────────────────────────────────────────────────────────────────────────────────────────


def test_a_16_mb_line_without_newline_is_bounded(work: Path) -> None:
    lines: list[str] = []
    size = 16 * 1024 * 1024
    script = f"head -c {size} /dev/zero | tr '\\0' x; echo; echo END"
    result = go(sh(script, work, output_limit=64_000), on_line=lines.append)
    assert result.truncated
    assert result.ok
    dropped = size + len("\nEND\n") - 64_000
    assert f"[{dropped} bytes of output dropped]" in result.output
    assert result.output.startswith("x" * 8_000 + "\n…")
    assert result.output.endswith("x" * 100 + "\nEND\n")
    assert len(result.output) < 64_000 + 100
    assert lines[-1] == "END"
    assert len(lines) == 2
    assert lines[0] == "x" * LINE_LIMIT + " …"


def test_capture_keeps_head_and_tail_exactly() -> None:
    capture = Capture(limit=80)
    data = bytes(range(48, 48 + 40)) * 1000  # 40 000 bytes
    for start in range(0, len(data), 7):
        capture.add(data[start : start + 7])
    text = capture.text()
    head, tail = text.split("\n… [")
    assert head == data[:10].decode()
    assert tail.endswith(data[-70:].decode())
    assert f"[{len(data) - 80} bytes" in "[" + tail
    assert capture.dropped == len(data) - 80


def test_capture_without_overflow_is_the_whole_output() -> None:
    capture = Capture(limit=100)
    capture.add("héllo\n".encode())
    capture.add(b"world")
    assert capture.text() == "héllo\nworld"
    assert capture.dropped == 0


def test_lines_are_split_across_reads_and_cut_when_long() -> None:
    seen: list[str] = []
    lines = Lines(seen.append, limit=5)
    for piece in (b"ab", b"c\nde", b"fghij", b"kl\r\nmn"):
        lines.add(piece)
    lines.close()
    assert seen == ["abc", "defgh …", "mn"]


# ── choosing a backend ──────────────────────────────────────────────────────────────────────────────


def test_this_machine_has_the_user_backend() -> None:
    assert sandbox.detect_backend() == "user"
    assert resolve_policy(None) == SandboxPolicy(backend="user")
    assert not resolve_policy(None).unsandboxed


def test_no_sandbox_available_is_a_one_line_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "detect_backend", lambda: None)
    with pytest.raises(UsageError) as err:
        resolve_policy(None)
    assert str(err.value) == (
        "no sandbox is available here: run as root / with passwordless sudo, "
        "or pass --sandbox none to run agents unsandboxed"
    )
    assert str(err.value) == NO_SANDBOX
    with pytest.raises(UsageError, match="needs root or passwordless sudo"):
        resolve_policy("user")
    assert resolve_policy("none").unsandboxed
    with pytest.raises(UsageError, match="unknown sandbox 'docker'"):
        resolve_policy("docker")


def test_non_root_without_sudo_detects_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(shutil, "which", lambda name, **_: None)
    assert sandbox.detect_backend() is None


def test_none_backend_runs_as_the_current_user_and_says_so(work: Path) -> None:
    result = go(sh("id -u; echo hello", work), NONE)
    assert result.unsandboxed
    assert result.output.split() == [str(os.geteuid()), "hello"]
    assert result.account == pwd.getpwuid(os.geteuid()).pw_name


def test_user_backend_runs_as_an_unprivileged_account_with_no_new_privileges(work: Path) -> None:
    result = go(sh("id -u; id -G; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status", work))
    uid, groups, *status = result.output.splitlines()
    entry = pwd.getpwnam(result.account)
    assert int(uid) == entry.pw_uid != 0
    assert groups.split() == [str(entry.pw_gid)]
    assert dict(line.split() for line in status) == {"NoNewPrivs:": "1", "CapEff:": "0000000000000000"}
    assert not result.unsandboxed
    assert result.account.startswith("ci-swarm-agent-")


def test_exit_codes_and_signals_are_reported(work: Path) -> None:
    failed = go(sh("echo oops; exit 3", work))
    assert (failed.returncode, failed.signal, failed.ok) == (3, None, False)
    killed = go(sh("kill -9 $$", work))
    assert (killed.returncode, killed.signal) == (None, 9)
    missing = go(ProcessSpec(argv=("no-such-program-xyz",), cwd=work))
    assert missing.returncode == 127


def test_concurrent_first_use_creates_the_account_once() -> None:
    name = "ci-swarm-test-race"
    subprocess.run(["userdel", name], capture_output=True, check=False)
    accounts = []

    def create() -> None:
        accounts.append(ensure_account(name))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accounts) == 6
    assert len(set(accounts)) == 1
    entries = [line for line in Path("/etc/passwd").read_text().splitlines() if line.startswith(name + ":")]
    assert len(entries) == 1
    assert entries[0].endswith(":/usr/sbin/nologin")


def test_spec_validation() -> None:
    with pytest.raises(UsageError):
        ProcessSpec(argv=(), cwd=Path("."))
    with pytest.raises(UsageError):
        ProcessSpec(argv=("A=B",), cwd=Path("."))
    with pytest.raises(UsageError):
        ProcessSpec(argv=("true",), cwd=Path("."), env={"BAD-NAME": "x"})
    with pytest.raises(UsageError):
        ProcessSpec(argv=("true",), cwd=Path("."), timeout=0)
    with pytest.raises(UsageError):
        SandboxPolicy(backend="docker")  # type: ignore[arg-type]

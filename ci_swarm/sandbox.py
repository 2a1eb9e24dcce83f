"""The sandbox: the only way ci-swarm starts a process it does not trust (an agent CLI, an agent's
``run_command``, a check over agent-written code).

``await run(ProcessSpec, SandboxPolicy) -> ProcessResult``. Two backends:

``user`` (the default wherever ci-swarm runs as root or has passwordless ``sudo -n``)
    The process runs as a dedicated unprivileged account leased from a small pool
    (``ci-swarm-agent-0`` … ``-<pool_size - 1>``, each with its own group, created on first use with
    ``useradd --system``; a lock file makes concurrent first use safe). Exactly one running process holds
    a given account at a time (a ``flock`` per account, so this holds across threads and processes on the
    machine), which is what makes the kill policy safe. It is started through ``setpriv --reuid --regid
    --clear-groups --no-new-privs --inh-caps=-all`` (prefixed with ``sudo -n`` when not root), in its own
    session, stdin ``/dev/null``. Being another uid, it cannot read the orchestrator's
    ``/proc/<pid>/environ`` (the kernel refuses), the runner's 0600 files or the user's 0700 checkout.
    It may write only what it owns: its per-process HOME/TMPDIR and the ``writable_dirs`` of its spec,
    which are handed to it before the start (:func:`prepare_dir`) and given back after every process of
    the account ended (:func:`reclaim_dir`).
``none`` (explicit opt-in, a developer's own machine)
    Runs as the current user: no isolation, ``ProcessResult.unsandboxed`` is true so reports can say so.
    The environment allow-list and the kill policy are the same.

**Environment**: built from an allow-list, never "the orchestrator's environment minus a deny-list":
``PATH`` (a fixed system path, :data:`SANE_PATH`; not the orchestrator's venv, which holds nothing an
agent needs — a caller that needs more passes its own ``PATH``), ``HOME`` and ``TMPDIR`` (a fresh
directory per process, removed afterwards), ``LANG``/``LC_ALL`` (``C.UTF-8``), ``TERM=dumb``, and exactly
the variables of ``ProcessSpec.env``.

**One kill policy**: at the timeout, on ``stop`` or on cancellation the whole tree gets SIGTERM, then
SIGKILL after :data:`KILL_GRACE`; when the main process exits by itself the rest of its tree is killed at
once and reading stops (a ``setsid`` child holding the pipe does not keep the run alive until the timeout).
With ``user`` "the tree" is every process of the leased uid, signalled by ``kill(-1)`` run *as that uid*
(atomic against ``fork`` in the kernel, and it reaches children that called ``setsid``; cgroups were not
used because they are not reliably writable in CI containers). With ``none`` it is the process group, the
descendants by parent pid and every process of ours whose environment carries the run's random
``CI_SWARM_SANDBOX_RUN`` token — best effort: a child that clears its environment and double-forks escapes.

**Output**: stdout and stderr, merged, kept bounded — the first eighth and the last seven eighths of
``output_limit`` bytes with a marker counting the bytes dropped between, in linear time and bounded
memory whatever the line lengths. An optional ``on_line`` callback receives lines for live logs (each cut
at :data:`LINE_LIMIT` bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ci_swarm.concurrency import in_thread
from ci_swarm.errors import SwarmError, UsageError

Backend = Literal["user", "none"]
BACKENDS: tuple[Backend, ...] = ("user", "none")
DEFAULT_USER = "ci-swarm-agent"
POOL_SIZE = 16
SANE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCALE = "C.UTF-8"
OUTPUT_LIMIT = 64_000  # bytes of output kept (head + tail)
LINE_LIMIT = 4_000  # bytes of one line given to on_line
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL
DRAIN_WAIT = 2.0  # seconds to read what is left once the tree is dead
RUN_TOKEN = "CI_SWARM_SANDBOX_RUN"
NO_SANDBOX = (
    "no sandbox is available here: run as root / with passwordless sudo, "
    "or pass --sandbox none to run agents unsandboxed"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,27}\Z")
_READ = 65_536


class SandboxError(SwarmError):
    """The sandbox could not be set up: an account, an ownership hand-over, a missing system tool."""


# ── values ──────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class SandboxPolicy:
    """How untrusted processes run. ``user`` is the name prefix of the account pool."""

    backend: Backend = "user"
    user: str = DEFAULT_USER
    pool_size: int = POOL_SIZE

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown sandbox {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if not _USER_NAME.match(self.user):
            raise UsageError(f"invalid sandbox user name {self.user!r}")
        if self.pool_size < 1:
            raise UsageError("the sandbox account pool needs at least one account")

    @property
    def unsandboxed(self) -> bool:
        return self.backend == "none"

    def account_name(self, slot: int) -> str:
        return f"{self.user}-{slot}"


@dataclass(frozen=True)
class ProcessSpec:
    """One untrusted process: argv (never a shell), working directory, the caller's allow-listed extra
    variables, timeout in seconds, output bound in bytes, directories it may write."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    output_limit: int = OUTPUT_LIMIT
    writable_dirs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise UsageError("a sandboxed process needs a program")
        if "=" in self.argv[0] or any("\0" in arg for arg in self.argv):
            raise UsageError(f"invalid program or argument in {self.argv!r}")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name) or "\0" in value:
                raise UsageError(f"invalid environment variable {name!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"timeout must be positive, not {self.timeout!r}")
        if self.output_limit < 16:
            raise UsageError(f"output limit too small: {self.output_limit}")


@dataclass(frozen=True)
class ProcessResult:
    """How it ended. ``returncode`` is None when a signal ended it (``signal`` then says which);
    ``output`` is bounded, ``truncated`` says whether bytes were dropped from its middle."""

    returncode: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    output: str
    truncated: bool
    duration: float
    account: str
    unsandboxed: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.cancelled


@dataclass(frozen=True)
class Account:
    """A sandbox account of the pool."""

    name: str
    uid: int
    gid: int


# ── choosing a backend ──────────────────────────────────────────────────────────────────────────────


def detect_backend() -> Backend | None:
    """``user`` when running as root or passwordless ``sudo -n`` works, else None."""
    if os.geteuid() == 0:
        return "user"
    if shutil.which("sudo") is None:
        return None
    try:
        done = subprocess.run(
            ["sudo", "-n", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "user" if done.returncode == 0 else None


def resolve_policy(requested: str | None, user: str = DEFAULT_USER) -> SandboxPolicy:
    """The policy for ``--sandbox`` (None: whatever is available; ``none`` is never chosen implicitly)."""
    if requested is not None and requested not in BACKENDS:
        raise UsageError(f"unknown sandbox {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested == "none":
        return SandboxPolicy(backend="none", user=user)
    if detect_backend() is None:
        if requested == "user":
            raise UsageError("the user sandbox needs root or passwordless sudo; " + NO_SANDBOX)
        raise UsageError(NO_SANDBOX)
    return SandboxPolicy(backend="user", user=user)


# ── privileged helpers (root directly, or through sudo -n) ──────────────────────────────────────────


def _prefix() -> tuple[str, ...]:
    return () if os.geteuid() == 0 else ("sudo", "-n", "--")


def _tool(name: str) -> str:
    found = shutil.which(name, path=SANE_PATH)
    if found is None:
        raise SandboxError(f"the sandbox needs `{name}`, which is not installed")
    return found


def _privileged(argv: Sequence[str], ok: tuple[int, ...] = (0,)) -> None:
    try:
        done = subprocess.run(
            [*_prefix(), *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={"PATH": SANE_PATH, "LC_ALL": "C"},
            check=False,
        )
    except OSError as exc:
        raise SandboxError(f"cannot run `{argv[0]}`: {exc.strerror or exc}") from exc
    if done.returncode not in ok:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise SandboxError(f"`{' '.join(argv[:2])} …` exited {done.returncode}: {lines[-1] if lines else ''}")


def _as_account(account: Account) -> list[str]:
    return [
        _tool("setpriv"),
        f"--reuid={account.uid}",
        f"--regid={account.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--",
    ]


# ── accounts and the pool ───────────────────────────────────────────────────────────────────────────


def _state_dir() -> Path:
    """This orchestrator user's lock directory (0700, checked to be ours and not a symlink)."""
    path = Path(tempfile.gettempdir()) / f"ci-swarm-sandbox-locks-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(f"{path} is not a private directory of this user")
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lookup(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(name, entry.pw_uid, entry.pw_gid)


def ensure_account(name: str) -> Account:
    """The account ``name``, created on first use (idempotent; serialized by a lock file, and a
    concurrent ``useradd`` elsewhere that wins the race is accepted)."""
    account = _lookup(name)
    if account is None:
        with _locked(_state_dir() / "accounts.lock"):
            account = _lookup(name)
            if account is None:
                nologin = shutil.which("nologin", path=SANE_PATH) or "/usr/sbin/nologin"
                useradd = [_tool("useradd"), "--system", "--no-create-home", "--home-dir", "/nonexistent"]
                options = ["--shell", nologin, "--user-group", "--comment", "ci-swarm sandbox", name]
                _privileged([*useradd, *options], ok=(0, 9))  # 9: the name exists (created meanwhile)
                account = _lookup(name)
    if account is None:
        raise SandboxError(f"cannot create the sandbox account {name!r}")
    if account.uid == 0 or account.gid == 0:
        raise SandboxError(f"the sandbox account {name!r} is privileged (uid or gid 0): refusing it")
    return account


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.asynccontextmanager
async def lease(policy: SandboxPolicy) -> AsyncIterator[Account]:
    """An account of the pool no other sandboxed process holds (waits while all are busy)."""
    state = _state_dir()
    fd: int | None = None
    while fd is None:
        for slot in range(policy.pool_size):
            fd = _try_lock(state / f"{policy.account_name(slot)}.lock")
            if fd is not None:
                break
        else:
            await asyncio.sleep(0.05)
    try:
        yield await asyncio.to_thread(ensure_account, policy.account_name(slot))
    finally:
        os.close(fd)


# ── handing directories over and back ───────────────────────────────────────────────────────────────


def prepare_dir(path: Path, account: Account) -> None:
    """Hand the tree at ``path`` to ``account`` before its process starts: every entry the orchestrator
    owns (symlinks themselves, never their targets; files with several hard links stay as they are, so a
    link to a file outside cannot be used to give that file away)."""
    me = str(os.geteuid())
    keep = ["!", "(", "-type", "f", "-links", "+1", ")"]
    chown = [_tool("chown"), "-h", f"{account.uid}:{account.gid}", "{}", "+"]
    _privileged([_tool("find"), str(path), "-uid", me, *keep, "-exec", *chown])


def reclaim_dir(path: Path, account: Account) -> None:
    """Give the tree at ``path`` back to the orchestrator once no process of ``account`` runs: only
    entries the account owns (what it could not create, it cannot give away), made user-writable."""
    uid = str(account.uid)
    find = [_tool("find"), str(path), "-uid", uid]
    chmod = [_tool("chmod"), "u+rwX", "{}", "+"]
    _privileged([*find, "(", "-type", "d", "-o", "-type", "f", ")", "-exec", *chmod])
    chown = [_tool("chown"), "-h", f"{os.geteuid()}:{os.getegid()}", "{}", "+"]
    _privileged([*find, "-exec", *chown])


# ── the process table ───────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    pgid: int
    uid: int
    live: bool


def _processes() -> Iterator[_Proc]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: -1")
        yield _Proc(
            pid=int(entry.name),
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            uid=int(uid_line.split()[1]),
            live=fields[0] not in ("Z", "X"),
        )


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


# ── backends ────────────────────────────────────────────────────────────────────────────────────────


class _Box(Protocol):
    account: str
    unsandboxed: bool

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]: ...

    def signal_all(self, sig: signal.Signals, main: int) -> None: ...

    def alive(self, main: int) -> bool: ...


def _env_argv(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    return [_tool("env"), "-i", *(f"{k}={v}" for k, v in env.items()), *argv]


class _UserBox:
    """Every process of one leased uid is the tree."""

    unsandboxed = False

    def __init__(self, account: Account) -> None:
        self.account = account.name
        self._account = account

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        return [*_prefix(), *_as_account(self._account), *_env_argv(argv, env)]

    def signal_all(self, sig: signal.Signals, main: int = 0) -> None:
        kill = [_tool("kill"), f"-{sig.name.removeprefix('SIG')}", "--", "-1"]
        _privileged([*_as_account(self._account), *kill], ok=(0, 1))  # 1: nothing left to signal

    def alive(self, main: int = 0) -> bool:
        return any(p.live and p.uid == self._account.uid for p in _processes())


class _OwnBox:
    """The process group, its descendants, and our processes carrying the run token (best effort)."""

    unsandboxed = True

    def __init__(self) -> None:
        self.account = pwd.getpwuid(os.geteuid()).pw_name
        self.token = secrets.token_hex(16)

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        return _env_argv(argv, {**env, RUN_TOKEN: self.token})

    def _tree(self, main: int) -> set[int]:
        mine = [p for p in _processes() if p.live and p.uid == os.geteuid() and p.pid != os.getpid()]
        marker = f"{RUN_TOKEN}={self.token}".encode()
        tree = {p.pid for p in mine if p.pid == main or p.pgid == main or _environ_has(p.pid, marker)}
        grew = True
        while grew:
            more = {p.pid for p in mine if p.ppid in tree} - tree
            tree |= more
            grew = bool(more)
        return tree

    def signal_all(self, sig: signal.Signals, main: int) -> None:
        for pid in self._tree(main):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def alive(self, main: int) -> bool:
        return bool(self._tree(main))


@contextlib.asynccontextmanager
async def _scratch(account: Account | None) -> AsyncIterator[Path]:
    """A fresh HOME and TMPDIR for one process, owned by its account, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ci-swarm-sandbox-"))
    (base / "home").mkdir()
    (base / "tmp").mkdir()
    try:
        if account is not None:
            await in_thread(prepare_dir, base, account)
        yield base
    finally:
        if account is not None:
            await in_thread(reclaim_dir, base, account)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.asynccontextmanager
async def _open(policy: SandboxPolicy, dirs: Sequence[Path]) -> AsyncIterator[tuple[_Box, Path]]:
    if policy.unsandboxed:
        async with _scratch(None) as scratch:
            yield _OwnBox(), scratch
        return
    async with lease(policy) as account:
        box = _UserBox(account)
        box.signal_all(signal.SIGKILL)  # whatever an earlier, crashed orchestrator left behind
        async with _scratch(account) as scratch:
            for path in dirs:
                await in_thread(prepare_dir, path, account)
            try:
                yield box, scratch
            finally:
                box.signal_all(signal.SIGKILL)
                for path in dirs:
                    await in_thread(reclaim_dir, path, account)


def sandbox_env(scratch: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a sandboxed process: the allow-list plus the caller's variables."""
    base = {
        "PATH": SANE_PATH,
        "HOME": str(scratch / "home"),
        "TMPDIR": str(scratch / "tmp"),
        "LANG": LOCALE,
        "LC_ALL": LOCALE,
        "TERM": "dumb",
    }
    return {**base, **extra}


# ── output ──────────────────────────────────────────────────────────────────────────────────────────


class Capture:
    """Bounded output in linear time: the first ``limit // 8`` and the last ``limit - limit // 8`` bytes;
    the bytes between are counted, not kept. Memory stays below ``limit * 2`` plus one read."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self._head_limit = limit // 8
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def add(self, data: bytes) -> None:
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        if len(self._tail) > 2 * self._tail_limit:  # trimming at most once per tail_limit bytes: linear
            self._trim()

    def _trim(self) -> None:
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            del self._tail[:excess]
            self._dropped += excess

    @property
    def dropped(self) -> int:
        self._trim()
        return self._dropped

    def text(self) -> str:
        if not self.dropped:
            return bytes(self._head + self._tail).decode("utf-8", "replace")
        tail = bytes(self._tail)
        skip = next((i for i, b in enumerate(tail[:4]) if b & 0xC0 != 0x80), 0)  # start on a character
        head = bytes(self._head).decode("utf-8", "replace")
        marker = f"\n… [{self._dropped} bytes of output dropped] …\n"
        return head + marker + tail[skip:].decode("utf-8", "replace")


class Lines:
    """Splits output into lines for a live log in linear time; a line longer than ``limit`` bytes is cut
    (marked ``…``) and the rest of it skipped."""

    def __init__(self, emit: Callable[[str], None], limit: int = LINE_LIMIT) -> None:
        self._emit = emit
        self._limit = limit
        self._partial = bytearray()
        self._cut = False

    def add(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._take(data[start:end])
            self._flush()
            start = end + 1
        self._take(data[start:])

    def close(self) -> None:
        if self._partial or self._cut:
            self._flush()

    def _take(self, piece: bytes) -> None:
        room = self._limit - len(self._partial)
        if len(piece) > room:
            self._cut = True
            piece = piece[: max(room, 0)]
        self._partial += piece

    def _flush(self) -> None:
        line = bytes(self._partial).decode("utf-8", "replace").rstrip("\r")
        self._emit(line + " …" if self._cut else line)
        self._partial.clear()
        self._cut = False


async def _pump(stream: asyncio.StreamReader, capture: Capture, lines: Lines | None) -> None:
    while chunk := await stream.read(_READ):
        capture.add(chunk)
        if lines is not None:
            lines.add(chunk)
    if lines is not None:
        lines.close()


# ── running ─────────────────────────────────────────────────────────────────────────────────────────


async def run(
    spec: ProcessSpec,
    policy: SandboxPolicy,
    *,
    on_line: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ProcessResult:
    """Run ``spec`` under ``policy``. Setting ``stop`` ends the tree and returns a ``cancelled`` result
    (with the output so far); cancelling the task ends the tree and re-raises."""
    dirs = tuple(Path(path).resolve() for path in spec.writable_dirs)
    async with _open(policy, dirs) as (box, scratch):
        return await _supervise(box, spec, sandbox_env(scratch, spec.env), on_line, stop)


def run_blocking(
    spec: ProcessSpec, policy: SandboxPolicy, *, on_line: Callable[[str], None] | None = None
) -> ProcessResult:
    """:func:`run` for synchronous callers (not from inside a running event loop)."""
    return asyncio.run(run(spec, policy, on_line=on_line))


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol plus a future set when the main process exits — ``Process.wait()`` waits
    for the pipes to close as well, which a ``setsid`` child holding stdout can delay forever."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=_READ, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _supervise(
    box: _Box,
    spec: ProcessSpec,
    env: Mapping[str, str],
    on_line: Callable[[str], None] | None,
    stop: asyncio.Event | None,
) -> ProcessResult:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _Protocol(loop),
            *box.command(spec.argv, env),
            cwd=spec.cwd,
            env={"PATH": SANE_PATH},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start {spec.argv[0]!r} in {spec.cwd}: {exc.strerror or exc}") from exc
    assert protocol.stdout is not None
    capture = Capture(spec.output_limit)
    reader = asyncio.create_task(_pump(protocol.stdout, capture, Lines(on_line) if on_line else None))
    pid = transport.get_pid()
    try:
        try:
            timed_out, cancelled = await _wait(protocol.exited, spec.timeout, stop)
            await _end_tree(box, pid, protocol.exited, KILL_GRACE if timed_out or cancelled else 0.0)
        except asyncio.CancelledError:
            await _end_tree(box, pid, protocol.exited, KILL_GRACE)
            reader.cancel()
            raise
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, DRAIN_WAIT)  # the writers are dead: only buffered bytes are left
    finally:
        transport.close()
    code = transport.get_returncode()
    assert code is not None
    return ProcessResult(
        returncode=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=timed_out,
        cancelled=cancelled,
        output=capture.text(),
        truncated=capture.dropped > 0,
        duration=time.monotonic() - started,
        account=box.account,
        unsandboxed=box.unsandboxed,
    )


async def _wait(
    exited: asyncio.Future[None], timeout: float | None, stop: asyncio.Event | None
) -> tuple[bool, bool]:
    """Wait for the main process to exit, the timeout or ``stop``: (timed_out, cancelled)."""
    if stop is None:
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        except TimeoutError:
            return True, False
        return False, False
    stopper: asyncio.Future[None] = asyncio.ensure_future(_set(stop))
    try:
        await asyncio.wait({exited, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if exited.done():
        return False, False
    return not stop.is_set(), stop.is_set()


async def _set(event: asyncio.Event) -> None:
    await event.wait()


async def _end_tree(box: _Box, pid: int, exited: asyncio.Future[None], grace: float) -> None:
    """SIGTERM the tree and wait ``grace`` for the main process, then SIGKILL until nothing is left."""
    if grace > 0 and not exited.done():
        box.signal_all(signal.SIGTERM, pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), grace)
    for _ in range(250):
        box.signal_all(signal.SIGKILL, pid)
        if exited.done() and not box.alive(pid):
            return
        await asyncio.sleep(0.02)
    raise SandboxError(f"process {pid} or one of its children survived SIGKILL")

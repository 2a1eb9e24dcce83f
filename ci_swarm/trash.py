"""Deleting a run's directories off its critical path: a trash directory is deleted by a background thread.

The caller has already moved what goes (renames: instant) into one trash directory that carries the run's
lock file (:data:`ci_swarm.clones.LOCK`), so the run goes on — verification, the report, publishing — while
the files are deleted. The lock is deleted last: a process that dies before the deletion ends leaves a trash
directory whose owner is gone, which :func:`ci_swarm.clones.remove_stale` deletes (at the next run's start,
or by ``ci-swarm cleanup``). The threads are not daemons: the interpreter waits for them before it exits.
:func:`wait` waits for every pending deletion (tests, benchmarks, a caller that needs the disk back).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_pending: list[threading.Thread] = []
_seconds: list[float] = []  # the finished deletions' own durations, not yet reported by wait


def remove_later(directory: Path, *, last: str) -> None:
    """Delete ``directory`` in a background thread, its entry ``last`` (the lock file) after the rest."""
    thread = threading.Thread(target=_delete, args=(directory, last), name=f"trash-{directory.name}")
    with _lock:
        _pending.append(thread)
    thread.start()


def _delete(directory: Path, last: str) -> None:
    began = time.monotonic()
    try:
        for entry in directory.iterdir():
            if entry.name != last:
                _remove(entry)
    except OSError:
        pass  # what is left keeps the lock: the next run's remove_stale finishes it
    else:
        shutil.rmtree(directory, ignore_errors=True)
    finally:
        with _lock:
            _seconds.append(time.monotonic() - began)
            _pending.remove(threading.current_thread())


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def pending() -> int:
    """How many deletions are still running."""
    with _lock:
        return len(_pending)


def wait() -> float:
    """Every pending deletion finished; the seconds they took in all (each its own duration, summed, since
    the last call): the removal time a run no longer waits for."""
    while True:
        with _lock:
            threads = list(_pending)
        if not threads:
            break
        for thread in threads:
            thread.join()
    with _lock:
        seconds = sum(_seconds)
        _seconds.clear()
    return round(seconds, 3)

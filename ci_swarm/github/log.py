"""The runner log: the one way the Action writes to stdout/stderr, where the runner reads workflow commands.

The runner acts on any line that starts (after leading blanks) with ``::name …::`` and, in the old syntax, on
``##[name …]`` anywhere in a line. Untrusted text (titles, roles, failure reasons, error messages, logins)
therefore never starts a line, never contains a line break and never contains ``##[``:

- :func:`ci_swarm.logtext.one_line` folds every line break into a visible ``⏎``, drops other control
  characters and defuses ``##[``;
- :func:`info` prints ``ci-swarm: <one line>`` (ours first, so nothing untrusted starts the line);
- :func:`command` formats ``::name props::data`` with data and properties escaped as GitHub's toolkit does
  (``%`` → ``%25``, ``\\r`` → ``%0D``, ``\\n`` → ``%0A``; ``:`` → ``%3A`` and ``,`` → ``%2C`` in properties);
- :func:`untrusted_block` prints raw multi-line text (an agent's log) between ``::stop-commands::<random>``
  and ``::<random>::``, so the runner ignores every command inside;
- :class:`FoldingHandler` does the same for Python ``logging`` records (the runner reads stderr too).
"""

from __future__ import annotations

import logging
import secrets
import sys
from typing import TextIO

from ci_swarm.logtext import one_line

__all__ = [
    "FoldingHandler",
    "command",
    "emit",
    "escape_data",
    "escape_property",
    "info",
    "install_logging",
    "one_line",
    "untrusted_block",
]


def escape_data(text: str) -> str:
    """A workflow command's data, escaped as ``@actions/core`` does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value, escaped as ``@actions/core`` does."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **props: str | int | None) -> str:
    """One workflow command line, e.g. ``::error file=a.py,line=3::boom`` (``name`` is never untrusted)."""
    given = [f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None and v != ""]
    head = f"::{name}" + (" " + ",".join(given) if given else "")
    return f"{head}::{escape_data(message)}"


def emit(line: str, out: TextIO | None = None) -> None:
    print(line, file=out or sys.stdout, flush=True)


def info(message: str, out: TextIO | None = None) -> None:
    """``ci-swarm: <message>`` on one line."""
    emit(f"ci-swarm: {one_line(message)}", out)


def untrusted_block(text: str, out: TextIO | None = None) -> None:
    """Raw multi-line text that may hold ``::`` lines, printed so the runner acts on none of them."""
    stream = out or sys.stdout
    token = secrets.token_hex(16)
    while token in text:  # pragma: no cover - 128 random bits
        token = secrets.token_hex(16)
    print(f"::stop-commands::{token}", file=stream)
    print(text.rstrip("\n"), file=stream)
    print(f"::{token}::", file=stream, flush=True)


class FoldingHandler(logging.Handler):
    """A logging handler printing each record to the current ``sys.stderr`` as one folded line
    (``ci-swarm: <level>: <message>``); the runner reads stderr for commands too."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"ci-swarm: {record.levelname.lower()}: {one_line(record.getMessage())}"
            print(line, file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - logging must never break the run
            self.handleError(record)


def install_logging(name: str = "ci_swarm") -> None:
    """Route warnings of ``name``'s loggers through :class:`FoldingHandler` (once), instead of Python's
    last-resort handler, which prints messages raw."""
    logger = logging.getLogger(name)
    if not _folded(logger):
        logger.addHandler(FoldingHandler(logging.WARNING))


def _folded(logger: logging.Logger) -> bool:
    """``logger`` or an ancestor its records propagate to already has a FoldingHandler (no double lines)."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(isinstance(h, FoldingHandler) for h in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False

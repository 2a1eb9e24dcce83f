"""Untrusted text made safe for one line of a log that GitHub's runner reads for workflow commands.

The runner acts on a line that starts (after blanks) with ``::name::`` and on ``##[name]`` anywhere in a line.
:func:`one_line` folds every line break (``\\r``, ``\\n``, ``\\v``, ``\\f``, ``\\x1c``–``\\x1e``, ``\\x85``,
``\\u2028``, ``\\u2029``) into a visible ``⏎``, drops other control characters and defuses ``##[``; printed
after a prefix of ours, such text can never start a line or a command. Core (no adapter imports): the
terminal progress and the CLI use it as well as the Action's runner log (:mod:`ci_swarm.github.log`).
"""

from __future__ import annotations

import re

BREAK = " ⏎ "
_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` as one inert log line: breaks folded into ``⏎``, controls dropped, ``##[`` defused."""
    folded = _CONTROLS.sub("", _BREAKS.sub(BREAK, text))
    return folded.replace("##[", "#\u200b#[")

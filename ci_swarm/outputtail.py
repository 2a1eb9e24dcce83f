"""An agent's output as the reports show it: the last :data:`TAIL_LINES` lines, every secret of the run
and every token format :mod:`ci_swarm.secretscan` knows replaced by ``***``."""

from __future__ import annotations

from collections.abc import Sequence

from ci_swarm.secretscan import Detector

TAIL_LINES = 40


class Redactor:
    """Redacts the run's ``secrets`` (and their encodings) and known token formats from text."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._detector = Detector(secrets)

    def __repr__(self) -> str:  # never show the secrets
        return "Redactor()"

    def text(self, text: str) -> str:
        data = text.encode("utf-8", "surrogateescape")
        return self._detector.redact(data).decode("utf-8", "replace")

    def tail(self, output: str, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of ``output``, redacted (the whole output is redacted first, so a
        secret spanning the cut is still found)."""
        return "\n".join(self.text(output).splitlines()[-lines:]) if output else ""

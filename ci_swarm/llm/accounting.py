"""Usage and cost per key (a subtask id, or "planner") and in total; the swarm-wide budget.

One :class:`Ledger` per run, used from one event loop: every HTTP attempt is counted (``requests``, and
``retries`` for the attempts after the first), every model response adds a turn, its tokens and its cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ci_swarm.errors import LLMError
from ci_swarm.llm.pricing import PriceTable, TokenCounts
from ci_swarm.models import Usage

PLANNER_KEY = "planner"


class BudgetStop(LLMError):
    """The swarm budget was used up before this request could go out."""


@dataclass(frozen=True)
class Budget:
    """Limits for the whole swarm; None means unlimited."""

    max_usd: float | None = None
    max_tokens: int | None = None

    def exceeded(self, total: Usage) -> str | None:
        """Why the budget is used up, or None while there is budget left."""
        if self.max_usd is not None and total.cost_usd >= self.max_usd:
            return f"budget reached: ${total.cost_usd:.4f} of ${self.max_usd:.4f} spent"
        if self.max_tokens is not None and total.tokens >= self.max_tokens:
            return f"budget reached: {total.tokens} of {self.max_tokens} tokens used"
        return None


class Ledger:
    def __init__(self, prices: PriceTable) -> None:
        self._prices = prices
        self._by_key: dict[str, Usage] = {}
        self.unpriced_models: set[str] = set()

    def attempt(self, key: str, *, retry: bool) -> None:
        """One HTTP attempt (the SDK's middleware runs once per attempt)."""
        self._add(key, Usage(requests=1, retries=int(retry)))

    def response(self, key: str, model: str, tokens: TokenCounts) -> Usage:
        """One model response (a turn): its tokens and cost. Returns the usage it added."""
        if self._prices.lookup(model) is None:
            self.unpriced_models.add(model)
        added = Usage(
            turns=1,
            input_tokens=tokens.input,
            output_tokens=tokens.output,
            cache_read_tokens=tokens.cache_read,
            cache_write_tokens=tokens.cache_write,
            cost_usd=self._prices.cost(model, tokens),
        )
        self._add(key, added)
        return added

    def _add(self, key: str, usage: Usage) -> None:
        self._by_key[key] = self._by_key.get(key, Usage()) + usage

    def usage(self, key: str | None = None) -> Usage:
        if key is not None:
            return self._by_key.get(key, Usage())
        total = Usage()
        for usage in self._by_key.values():
            total = total + usage
        return total

    def by_key(self) -> Mapping[str, Usage]:
        return MappingProxyType(dict(self._by_key))

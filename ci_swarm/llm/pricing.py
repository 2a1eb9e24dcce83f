"""Price table for Claude models (USD per million tokens) and the cost of one response's usage.

Defaults follow Anthropic's published prices (platform.claude.com/docs/en/about-claude/pricing): a 5-minute
cache write costs 1.25x the base input price, a cache read 0.1x. Unknown models fall back to their family
(``claude-opus-*``, ``claude-sonnet-*``, ``claude-haiku-*``); prices can be overridden per model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ci_swarm.errors import ConfigError

MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def of(cls, input: float, output: float, cache_read: float | None = None) -> Price:
        read = round(input * 0.1, 6) if cache_read is None else cache_read
        return cls(input, output, round(input * 1.25, 6), read)


@dataclass(frozen=True)
class TokenCounts:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


_OPUS = Price.of(5.0, 25.0)
_SONNET = Price.of(3.0, 15.0)
_HAIKU = Price.of(1.0, 5.0)
_FABLE = Price.of(10.0, 50.0, cache_read=1.0)
_FABLE_1 = Price.of(10.0, 50.0, cache_read=0.25)

DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "claude-fable-5-1": _FABLE_1,
        "claude-fable-5": _FABLE,
        "claude-mythos-5-1": _FABLE_1,
        "claude-mythos-5": _FABLE,
        "claude-opus-5": _OPUS,
        "claude-opus-4-8": _OPUS,
        "claude-opus-4-7": _OPUS,
        "claude-opus-4-6": _OPUS,
        "claude-opus-4-5": _OPUS,
        "claude-opus-4-1": Price.of(15.0, 75.0),
        "claude-opus-4": Price.of(15.0, 75.0),
        "claude-sonnet-4-6": _SONNET,
        "claude-sonnet-4-5": _SONNET,
        "claude-sonnet-4": _SONNET,
        "claude-haiku-4-5": _HAIKU,
        # family fallbacks for models newer than this table
        "claude-fable": _FABLE,
        "claude-mythos": _FABLE,
        "claude-opus": _OPUS,
        "claude-sonnet": _SONNET,
        "claude-haiku": _HAIKU,
    }
)

_DATE_SUFFIX = re.compile(r"-\d{8}$")


class PriceTable:
    """Looks a model up exactly, then without its date suffix, then by the longest known prefix."""

    def __init__(self, overrides: Mapping[str, Price | Mapping[str, float]] | None = None) -> None:
        table = dict(DEFAULT_PRICES)
        for model, price in (overrides or {}).items():
            table[model] = price if isinstance(price, Price) else price_from_mapping(model, price)
        self._table = table

    def lookup(self, model: str) -> Price | None:
        name = _DATE_SUFFIX.sub("", model)
        for candidate in (model, name):
            if candidate in self._table:
                return self._table[candidate]
        prefixes = [k for k in self._table if name.startswith(k + "-") or name == k]
        return self._table[max(prefixes, key=len)] if prefixes else None

    def cost(self, model: str, tokens: TokenCounts) -> float:
        price = self.lookup(model)
        return 0.0 if price is None else cost_of(price, tokens)


def cost_of(price: Price, tokens: TokenCounts) -> float:
    total = (
        tokens.input * price.input
        + tokens.output * price.output
        + tokens.cache_read * price.cache_read
        + tokens.cache_write * price.cache_write
    )
    return round(total / MTOK, 6)


def price_from_mapping(model: str, data: Mapping[str, float]) -> Price:
    """A price override from config: ``{input, output, cache_write?, cache_read?}`` in USD per MTok."""
    unknown = set(data) - {"input", "output", "cache_write", "cache_read"}
    if unknown:
        raise ConfigError(f"price for {model!r}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        base = Price.of(float(data["input"]), float(data["output"]))
        return Price(
            base.input,
            base.output,
            float(data.get("cache_write", base.cache_write)),
            float(data.get("cache_read", base.cache_read)),
        )
    except KeyError as exc:
        raise ConfigError(f"price for {model!r} needs {exc.args[0]!r} (USD per million tokens)") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"price for {model!r}: prices must be numbers") from exc

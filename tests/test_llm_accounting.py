"""Prices, the usage ledger and the swarm budget."""

from __future__ import annotations

import tomllib

import pytest

from ci_swarm.errors import ConfigError
from ci_swarm.llm.accounting import Budget, Ledger
from ci_swarm.llm.pricing import Price, PriceTable, TokenCounts, cost_of
from ci_swarm.models import Usage

MTOK = 1_000_000


def test_default_prices_for_current_models() -> None:
    table = PriceTable()
    assert table.lookup("claude-sonnet-4-6") == Price(3.0, 15.0, 3.75, 0.3)
    assert table.lookup("claude-opus-4-8") == Price(5.0, 25.0, 6.25, 0.5)
    assert table.lookup("claude-haiku-4-5-20251001") == Price(1.0, 5.0, 1.25, 0.1)  # date suffix dropped


def test_unknown_models_fall_back_to_their_family_or_none() -> None:
    table = PriceTable()
    assert table.lookup("claude-sonnet-5-5") == table.lookup("claude-sonnet")
    assert table.lookup("gpt-9") is None
    assert table.cost("gpt-9", TokenCounts(input=MTOK)) == 0.0


def test_cost_counts_every_token_kind() -> None:
    price = Price(3.0, 15.0, 3.75, 0.3)
    tokens = TokenCounts(input=MTOK, output=MTOK, cache_read=MTOK, cache_write=MTOK)
    assert cost_of(price, tokens) == pytest.approx(3 + 15 + 0.3 + 3.75)


def test_price_overrides_from_config() -> None:
    table = PriceTable(
        {
            "my-model": {"input": 2, "output": 8},
            "claude-sonnet-4-6": {"input": 1, "output": 2, "cache_read": 0},
        }
    )
    assert table.lookup("my-model") == Price(2.0, 8.0, 2.5, 0.2)
    assert table.lookup("claude-sonnet-4-6") == Price(1.0, 2.0, 1.25, 0.0)
    with pytest.raises(ConfigError, match="needs 'output'"):
        PriceTable({"x": {"input": 1}})
    with pytest.raises(ConfigError, match="unknown key"):
        PriceTable({"x": {"input": 1, "output": 2, "discount": 3}})
    not_numbers = tomllib.loads('x = { input = "cheap", output = 2 }')  # untyped, as a config file is
    with pytest.raises(ConfigError, match="must be numbers"):
        PriceTable(not_numbers)


def test_ledger_counts_attempts_retries_turns_tokens_and_cost() -> None:
    ledger = Ledger(PriceTable())
    ledger.attempt("a", retry=False)
    ledger.attempt("a", retry=True)
    ledger.response(
        "a", "claude-sonnet-4-6", TokenCounts(input=1000, output=200, cache_read=5000, cache_write=0)
    )
    ledger.attempt("b", retry=False)
    ledger.response("b", "claude-sonnet-4-6", TokenCounts(input=10, output=10, cache_write=2000))
    a = ledger.usage("a")
    assert (a.requests, a.retries, a.turns) == (2, 1, 1)
    assert (a.input_tokens, a.output_tokens, a.cache_read_tokens) == (1000, 200, 5000)
    assert a.cost_usd == pytest.approx((1000 * 3 + 200 * 15 + 5000 * 0.3) / MTOK)
    total = ledger.usage()
    assert total.requests == 3 and total.turns == 2
    assert total.cache_write_tokens == 2000
    assert set(ledger.by_key()) == {"a", "b"}
    assert ledger.usage("nobody") == Usage()


def test_ledger_remembers_models_without_a_price() -> None:
    ledger = Ledger(PriceTable())
    ledger.response("a", "mystery-model", TokenCounts(input=10))
    assert ledger.unpriced_models == {"mystery-model"}
    assert ledger.usage().cost_usd == 0.0


def test_budget_by_usd_and_by_tokens() -> None:
    assert Budget().exceeded(Usage(cost_usd=1e9, input_tokens=10**9)) is None
    assert Budget(max_usd=1.0).exceeded(Usage(cost_usd=0.99)) is None
    reason = Budget(max_usd=1.0).exceeded(Usage(cost_usd=1.0))
    assert reason is not None and "$1.0000 of $1.0000" in reason
    reason = Budget(max_tokens=100).exceeded(Usage(input_tokens=60, cache_read_tokens=40))
    assert reason is not None and "100 of 100 tokens" in reason

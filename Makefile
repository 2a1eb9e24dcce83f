# The README's two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest actionlint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ci-swarm demo

test: lint typecheck actionlint pytest

lint: $(STAMP)
	$(BIN)/ruff check ci_swarm tests benchmarks
	$(BIN)/ruff format --check ci_swarm tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

actionlint: $(STAMP)
	$(BIN)/actionlint -shellcheck= .github/workflows/*.yml

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The README's two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine:
# `make demo` installs only the runtime dependencies, `make test` the dev extras too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
# pytest-xdist workers: the tests mostly wait on git and subprocesses, so more workers than cores pays
WORKERS ?= 4

.PHONY: demo test lint typecheck pytest actionlint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# runtime dependencies only (what `make demo` needs)
$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(RUNTIME)

# runtime + dev extras (tests, linters, type checker); covers the runtime stamp too
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

demo: $(RUNTIME)
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
	$(BIN)/pytest -q -n $(WORKERS) --dist worksteal

# the merge replay reads real histories fetched beforehand (CI has no network); skipped when absent
REPLAY_CORPUS ?= $(HOME)/.cache/ci-swarm/replay

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.bench_replay $(REPLAY_CORPUS) --write

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

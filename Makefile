# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint bench demo install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@ $(STAMP)

install: $(STAMP)

## Serve the API on the embedded SQLite default (./decision-ledger.sqlite3).
run: $(STAMP)
	$(BIN)/decision-ledger serve

## A fraud lane on a fresh ledger: watch it in the console (Ctrl-C stops it).
demo: $(STAMP)
	$(BIN)/decision-ledger demo $(DEMO_ARGS)

## Run the whole suite (PostgreSQL tests skip without a server unless
## DECISION_LEDGER_REQUIRE_POSTGRES=1).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

## The habits the machine checks: lint, format and types (strict on domain/ and application/).
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmarks (quick mode by default; BENCH_ARGS="--scale full" for the big run).
bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

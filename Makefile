# Two commands on a fresh machine:  make demo  (the user's loop)  and  make test.
# Both create the project-local virtual environment .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo demo-patterns test lint bench up clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first (never a multi-GB CUDA build), then the project.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/abplatform demo

demo-patterns: setup
	$(BIN)/abplatform demo --scenario patterns

up: setup
	$(BIN)/abplatform up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf .abplatform .pytest_cache .ruff_cache .hypothesis

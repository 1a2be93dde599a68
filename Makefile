# Preuve: `make demo` and `make test` do all the set-up on a fresh machine.
# Downloads are cached under the user's cache dir (pip: ~/.cache/pip, Maven and Kafka
# jars: ~/.cache/preuve); the virtual environment lives in .venv (git-ignored).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-unit lint bench-ingest bench-analysis soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash tools/install-system-deps.sh

install: system-deps $(STAMP)

demo: install
	$(BIN)/preuve demo

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check ingest experiments analysis tests benchmarks
	$(BIN)/mypy

bench-ingest: install
	$(BIN)/python benchmarks/bench_ingest.py

bench-analysis: install
	$(BIN)/python benchmarks/bench_analysis.py

soak: install
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

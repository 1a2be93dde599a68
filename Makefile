# Preuve: `make demo` and `make test` do all the set-up on a fresh machine.
# Downloads are cached under the user's cache dir (pip: ~/.cache/pip, Maven and Kafka
# jars: ~/.cache/preuve); the virtual environment lives in .venv (git-ignored).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-unit lint lock bench-ingest bench-scale-out bench-analysis soak clean

# Every package comes from requirements.lock, pinned with its hashes (pip refuses anything
# else); Preuve itself is then installed without dependencies and without build isolation,
# with the setuptools the lock pins. `make lock` refreshes the lock from pyproject.toml.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# uv resolves for every platform (--universal) and records each file's SHA-256; uv itself
# runs from a throwaway venv and is not a dependency of Preuve.
lock:
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install -q uv
	$(VENV)-lock/bin/uv pip compile pyproject.toml tools/lock-build.in --extra dev \
		--generate-hashes --universal --python-version 3.11 -o requirements.lock \
		--custom-compile-command "make lock"
	rm -rf $(VENV)-lock

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

bench-scale-out: install
	$(BIN)/python benchmarks/scale_out.py

bench-analysis: install
	$(BIN)/python benchmarks/bench_analysis.py

soak: install
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Two commands on a fresh clone: `make demo` (the toy pipeline) and `make test` (the test suite).
# Both create .venv and install everything first. On a CPU machine torch is pinned to the CPU
# build (TORCH_SPEC) before anything else, so no dependency can pull a multi-GB CUDA wheel; to
# keep a CUDA torch you already have, use `make VENV_FLAGS=--system-site-packages ...`.
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
CONFIG ?= toy

.PHONY: setup test lint demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $@

test: setup
	$(BIN)/python -m pytest

# Lint and format check (ruff, settings in pyproject.toml); CI runs it before the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup
	$(BIN)/sppd demo --config $(CONFIG)

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache

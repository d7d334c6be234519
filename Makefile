# Two entry points for a fresh clone; both build .venv on first use.
#   make train   trains the ptb-small preset on the vendored Penn Treebank (ARGS="..." passes options)
#   make test    runs the test suite
PYTHON ?= python3
VENV ?= .venv
# torch first, pinned to the CPU wheel these machines carry; elsewhere pick your build, e.g. TORCH=torch
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: train test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

train: $(VENV)/.installed
	$(BIN)/rnnlab train $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/train_speed.py

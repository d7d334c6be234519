# Entry points for a fresh clone; each builds .venv on first use.
#   make demo    the gradient problem and its fixes, measured (about 90 s on 2 CPU cores)
#   make test    runs the test suite
#   make train   trains the ptb-small preset on the vendored Penn Treebank (ARGS="..." passes options)
#   make bench   the training-throughput benchmark against the plain PyTorch loop
PYTHON ?= python3
VENV ?= .venv
# torch first, pinned to the CPU wheel these machines carry; elsewhere pick your build, e.g. TORCH=torch
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo train test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/rnnlab demo $(ARGS)

train: $(VENV)/.installed
	$(BIN)/rnnlab train $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/rnnlab bench --preset ptb-small

# `make demo` and `make test` set up .venv on first use (pip install -e '.[dev]'), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_CLIP := samples/demo.mp4

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/streamseg segment $(DEMO_CLIP) --out runs/demo --overwrite

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf runs .pytest_cache

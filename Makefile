# Two commands do all the set-up on a fresh machine with Python 3.10+:
#   make demo   virtual environment, install, synthetic data, CPU training, report
#   make test   virtual environment, install, the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch: a plain `torch` requirement would pull a multi-GB CUDA build.
# On a GPU machine install the torch build you want first, then `make install TORCH=`.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/pix2pix demo --out demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf demo runs .pytest_cache

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

# The browser tests (study web app, editor) drive Debian's Chromium through Playwright; Playwright's own
# browser download does not work offline. Without root or apt the browser tests skip with a reason.
$(VENV)/.browser: $(VENV)/.installed
	@test -x /usr/bin/chromium || (apt-get install -y -q chromium >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
		echo "note: could not install chromium; the browser tests will be skipped"
	touch $@

demo: install
	$(BIN)/pix2pix demo --out demo

test: install $(VENV)/.browser
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf demo runs .pytest_cache

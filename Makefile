# Quick start: `make demo` runs the city on the embedded stack; `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The engine's loops built ahead of time (state/compiled.py), again whenever a source of them changes.
LOOPS  := $(VENV)/.loops
LOOP_SOURCES := state/compiled.py state/slots.py models/online/shape_memory.py models/online/anomaly.py agents/build_loops.py
# The console's browser tests drive Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(LOOPS): $(STAMP) $(LOOP_SOURCES)
	$(BIN)/python -m agents.build_loops
	touch $(LOOPS)

demo: $(STAMP) $(LOOPS)
	$(BIN)/warden demo

$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

test: $(STAMP) $(LOOPS) $(CHROMIUM) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP) $(LOOPS)
	$(BIN)/warden bench

clean:
	rm -rf $(VENV) .warden .pytest_cache state/_loops.*.so

# Everything a fresh machine needs: `make serve` runs the service, `make test` runs the tests.
# Both create the virtual environment and install the project first (once per pyproject change).
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: serve test test-slow lint bench demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

serve: $(VENV)/.installed
	$(BIN)/ledger serve

demo: $(VENV)/.installed
	$(BIN)/ledger demo

test: $(VENV)/.installed
	$(BIN)/pytest -m "not slow"

# Longer suites (large replays, soak); CI runs them. Exit code 5 means none are selected.
test-slow: $(VENV)/.installed
	$(BIN)/pytest -m slow || [ $$? -eq 5 ]

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/ledger bench --backend sqlite
	$(BIN)/ledger bench --backend postgres

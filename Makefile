# Two commands for a newcomer: `make dev` runs everything, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install dev test lint bench

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.installed

dev: install
	$(BIN)/pledges dev

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Figures of issue 11, each beside its baseline from the same run (needs local PostgreSQL,
# Redis and wrk; wrk comes from Debian's package when this runs as root).
bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } \
		|| { echo "wrk is missing: sudo apt-get install -y wrk"; exit 1; }
	PYTHONPATH=. $(BIN)/python -u benchmarks/throughput.py
	PYTHONPATH=. $(BIN)/python -u benchmarks/email_throughput.py
	PYTHONPATH=. $(BIN)/python -u benchmarks/pledge_latency.py

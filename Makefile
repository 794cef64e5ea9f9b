# Two commands for a newcomer: `make dev` runs everything, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCALES := billing/locales
CATALOGS := $(wildcard $(LOCALES)/*/LC_MESSAGES/messages.po)

.PHONY: install dev test lint bench messages

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.installed $(CATALOGS:.po=.mo)

# Compiled catalogs are built here and in the Dockerfile, never committed (.gitignore).
$(LOCALES)/%/LC_MESSAGES/messages.mo: $(LOCALES)/%/LC_MESSAGES/messages.po $(BIN)/.installed
	$(BIN)/pybabel -q compile -D messages -l $* -i $< -o $@

# Every reader-facing string into messages.pot, then into each language's messages.po: a new
# string arrives untranslated, a changed one fuzzy, and tests/unit/test_catalogs.py fails until
# a translator fills them in.
messages: $(BIN)/.installed
	$(BIN)/pybabel -q extract -F babel.cfg -k Message -k Plural:1,2 --add-location=file \
		--sort-by-file --no-wrap --project="Reader Pledges" -o $(LOCALES)/messages.pot .
	$(BIN)/pybabel -q update -D messages -i $(LOCALES)/messages.pot -d $(LOCALES) \
		--no-wrap --ignore-obsolete

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

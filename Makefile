# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs the project from its own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wiseflow-sync demo

test: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy --strict service/
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict service/

bench: $(STAMP)
	$(BIN)/python bench/ratelimit.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

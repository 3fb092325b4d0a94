# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs the project from its own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test tools soak lint typecheck unit bench lock clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wiseflow-sync demo

test: $(STAMP)
	@$(MAKE) --no-print-directory tools || echo "(without them the rule and browser tests skip)"
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy --strict service/
	$(BIN)/lint-imports
	$(BIN)/pytest -q

# The machine tools some tests drive, from Debian's packages: promtool (package prometheus) checks and tests
# the alert rules, chromium renders the console in the browser tests (through Playwright, never its own
# browser download). Installed when missing and running as root; otherwise this says how. Without them
# those tests skip, naming the package; .ci/run sets WISEFLOW_SYNC_REQUIRE_TOOLS=1, so there they fail.
tools:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "missing:$$missing; install as root: apt-get install --no-install-recommends$$missing"; exit 1; fi

# The chaos soak for 15 minutes (`make test` runs it for one); SOAK_SEED=N replays a printed seed.
soak: $(STAMP)
	SOAK_SECONDS=$${SOAK_SECONDS:-900} $(BIN)/pytest -q -m soak tests/soak

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy --strict service/

# Every benchmark, then one table. The webhook benchmark needs wrk (a compiled load generator): installed
# here from Debian's packages when missing and running as root; otherwise bench/ingest.py says how.
# `make bench SYNC_SCALE=10` also runs the sync on 10x the world (about 15 minutes more).
bench: $(STAMP)
	@if ! command -v wrk >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq wrk; \
		else echo "wrk not found; bench/ingest.py needs it: apt-get install wrk (Debian/Ubuntu)"; fi; \
	fi
	$(BIN)/python bench/all.py $(if $(SYNC_SCALE),--sync-scale $(SYNC_SCALE))

# The image's dependency lock (Dockerfile): every runtime dependency and the build backend, pinned with
# hashes. Run after changing pyproject.toml's dependencies and commit requirements.lock with it.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for=wheel \
		--no-emit-index-url --no-emit-find-links --output-file=requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache

# dsprims developer commands. Every target bootstraps .venv on its own (idempotent: it
# reinstalls only when pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_FLAGS := --quiet --disable-pip-version-check --no-input
# pytest-xdist is not used: session-scoped test servers are shared by the whole run.
PYTEST_ARGS ?=

.PHONY: all demo test test-oldest bench lint format typecheck docs servers clean

all: lint test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "dsprims needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c 'import dsprims, redis, kazoo, pytest, mkdocs' || \
		{ echo "bootstrap of $(VENV) failed"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m dsprims demo $(DEMO_ARGS)

servers:
	@scripts/ensure-servers

test: $(STAMP) servers
	$(PY) -m pytest $(PYTEST_ARGS)

# The oldest redis-py and kazoo that pyproject.toml accepts, against every test that talks to
# Redis or ZooKeeper: the direct lock path, the fleet breaker and the ZooKeeper backend lean on
# driver details that changed across releases.
OLDEST_REDIS := 5.0.8
OLDEST_KAZOO := 2.9.0
OLD_VENV := .venv-oldest
OLD_STAMP := $(OLD_VENV)/.installed-$(OLDEST_REDIS)-$(OLDEST_KAZOO)

$(OLD_STAMP): pyproject.toml
	@test -x $(OLD_VENV)/bin/python || $(PYTHON) -m venv $(OLD_VENV)
	@$(OLD_VENV)/bin/python -m pip install $(PIP_FLAGS) 'redis==$(OLDEST_REDIS)' \
		'kazoo==$(OLDEST_KAZOO)' mmh3 pytest pytest-asyncio pytest-timeout hypothesis 2>&1 \
		| grep -v '^WARNING: Location' || true
	@$(OLD_VENV)/bin/python -m pip install $(PIP_FLAGS) --no-deps -e . 2>&1 \
		| grep -v '^WARNING: Location' || true
	@$(OLD_VENV)/bin/python -c 'import dsprims, redis, kazoo.client; \
		from importlib.metadata import version as v; \
		assert (v("redis"), v("kazoo")) == ("$(OLDEST_REDIS)", "$(OLDEST_KAZOO)")' \
		|| { echo "bootstrap of $(OLD_VENV) failed"; exit 1; }
	@touch $(OLD_STAMP)

test-oldest: $(OLD_STAMP) servers
	$(OLD_VENV)/bin/python -m pytest tests/backends tests/locks tests/locks_zk tests/ratelimit \
		tests/breaker $(PYTEST_ARGS)

bench: $(STAMP) servers
	$(PY) -m pytest benchmarks -p no:randomly --benchmark-only \
		--benchmark-json=benchmarks/.last-run.json -o addopts="" -o testpaths=benchmarks \
		--benchmark-min-rounds=5 $(BENCH_ARGS)
	$(PY) benchmarks/report.py benchmarks/.last-run.json benchmarks/RESULTS.md docs

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks examples
	$(VENV)/bin/ruff format src tests benchmarks examples

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(OLD_VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks

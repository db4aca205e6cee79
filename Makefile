# The only entry points a newcomer needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-matrix lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the example blog on the in-process store, at http://127.0.0.1:8000
demo: $(STAMP)
	cd example && ../$(PY) manage.py migrate --noinput
	cd example && ../$(PY) manage.py seed_blog
	cd example && ../$(PY) manage.py runserver 127.0.0.1:8000

## test: lint, type check, and the whole suite (real PostgreSQL and Redis)
test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests example bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## The suite runs in JOBS pytest-xdist worker processes (most tests wait on servers, not the
## CPU), a whole test module to one worker (--dist loadfile: a module's servers start once).
## Each worker has its own test database, Redis key prefix and Redis Cluster; JOBS=0 runs the
## suite in this one process.
JOBS ?= 2
XDIST = -n $(JOBS) --dist loadfile
pytest: $(STAMP)
	$(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

## test-matrix: the suite again on Django 4.2 LTS, and on Django 6.0 where a Python 3.12 exists,
## but for the tests whose subject no Django version changes, which run in `make test`: the
## Redis Cluster and Sentinel tests (the store's protocol against failing servers; a third of
## the suite's time), the store contract, near cache, journal and single flight, Redis faults
## and memory bounds, Varnish and the purgers, the multi-process tests (tests/e2e, the
## concurrency soaks, replica attacks), and the Hypothesis searches of stores and triggers.
## Capture's own Hypothesis test (`test_stateful`) does run: it checks the ORM's SQL, which each
## version changes. MATRIX_ARGS= runs them all.
MATRIX_ARGS ?= -k "not cluster and not sentinel and not freshness_property and not test_property \
  and not store_garbage and not memory_bounds and not redis_faults and not paused_redis \
  and not varnish and not breakit_12 and not log_faults and not test_concurrency \
  and not redis_acl and not cache_property and not e2e and not store_contract \
  and not near_cache and not test_flight and not evicted_versions and not test_journal \
  and not test_purgers and not test_rollup and not replica_attacks"
test-matrix:
	$(PYTHON) -m venv .venv-dj42
	.venv-dj42/bin/python -m pip install --quiet -e '.[dev]' 'Django>=4.2,<5.0'
	.venv-dj42/bin/pytest $(XDIST) $(PYTEST_ARGS) $(MATRIX_ARGS)
	@py312=$$(ls $$HOME/.pyenv/versions/3.12*/bin/python 2>/dev/null | head -1); \
	[ -n "$$py312" ] || py312=$$(command -v python3.12); \
	if [ -n "$$py312" ] && "$$py312" -c "import sys" 2>/dev/null; then \
	  $$py312 -m venv .venv-dj60 && \
	  .venv-dj60/bin/python -m pip install --quiet -e '.[dev]' 'Django>=6.0,<6.1' && \
	  .venv-dj60/bin/pytest $(XDIST) $(PYTEST_ARGS) $(MATRIX_ARGS); \
	else echo "!!! no Python 3.12 here: Django 6.0 not tested !!!"; fi

## bench: benchmarks (never part of `make test`); QUICK=1 for a short run
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) build dist src/*.egg-info example/db.sqlite3

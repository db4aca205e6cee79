# The only entry points a newcomer needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

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

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## bench: benchmarks (never part of `make test`); QUICK=1 for a short run
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) build dist src/*.egg-info example/db.sqlite3

# Two commands on a fresh machine: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck pytest docs bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]' --group dev
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) example_projects/django_shop/demo.py
	$(PY) example_projects/plain_python_demo.py

LINTED := goaltrack tests bench example_projects docs/_hooks

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(PY) -m mypy

# Test processes (pytest-xdist): the tests mostly wait on sockets, servers and outages, so more
# workers than cores pay off. On a 2-core machine `make check` took 83 s with 2 workers, 68 s
# with 3, 60 s with 4 and 60 s with 6 (more load for nothing): 4.
WORKERS ?= 4

pytest: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) --maxschedchunk 1 $(PYTEST_ARGS)

# The documentation site (mkdocs.yml), built strictly: a broken link, anchor or docstring fails.
SITE ?= site

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir $(SITE)

# mypy checks while the tests run (half a minute of mostly waiting on a fresh clone's empty cache).
test: lint docs
	$(MAKE) --no-print-directory -j2 typecheck pytest

# The edit loop: lint, types, then the unit and contract tests (not tests/system, not the README
# snippets of tests/docs, no test marked slow: make test runs those).
check: lint typecheck $(STAMP)
	$(PY) -m pytest -n $(WORKERS) --maxschedchunk 1 -q -m "not slow" --ignore=tests/system --ignore=tests/docs $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(SITE)

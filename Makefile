# alphahome: `make demo` runs the main job on a simulated market, `make test` the tests.
# Both bootstrap their own environment: a pinned uv in .tools/, the locked deps in .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
SYNCED := $(VENV)/.synced
DEMO_DIR ?= data
BENCH_ARGS ?=

.PHONY: help install test test-fast lint fmt demo bench bench-full clean catalogue

help:
	@echo "make demo        run the whole pipeline on a simulated market into ./$(DEMO_DIR)"
	@echo "make test        run the test suite on every core (starts throwaway PostgreSQL servers)"
	@echo "make lint / fmt  ruff check and mypy / ruff format"
	@echo "make bench       benchmarks, small scenario; make bench-full for 5,000 stocks x 15 years"
	@echo "make catalogue   copy ../shared/tushare/apis.json into cache/catalogue/"
	@echo "make clean       remove the environment, caches and ./$(DEMO_DIR)"

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(SYNCED): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	@touch $@

install: $(SYNCED)

test: $(SYNCED)
	$(VENV)/bin/pytest -n auto --dist loadscope

test-fast: $(SYNCED)
	$(VENV)/bin/pytest -m "not slow"

lint: $(SYNCED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(SYNCED)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: $(SYNCED)
	$(VENV)/bin/python -m pipeline.run.demo --cache-dir $(DEMO_DIR)

catalogue: $(SYNCED)
	$(VENV)/bin/python -m cache.catalogue.refresh $(SHARED_APIS)

bench: $(SYNCED)
	$(VENV)/bin/python -m bench --scenario small $(BENCH_ARGS)

bench-full: $(SYNCED)
	$(VENV)/bin/python -m bench --scenario full $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .hypothesis $(DEMO_DIR)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

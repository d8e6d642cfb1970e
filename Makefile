# tslake — run `make help` for the targets.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
export DO_NOT_TRACK := 1

.PHONY: help install system-deps demo test test-unit lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv/ with tslake, dbt and the test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install  ## embedded Postgres + synthetic metrics -> backfill, tick, inspect, parity
	$(BIN)/python -m runner.dev.demo

system-deps:  ## the Debian packages the tests need (.ci/system-packages), when missing
	bash .ci/system-deps

test: install system-deps  ## the whole suite (unit + integration against a real Postgres), 2 workers
	$(BIN)/pytest -n 2 --dist loadfile

test-unit: install  ## only the fast unit tests
	$(BIN)/pytest -m unit

bench: install  ## 10M-row table in a throwaway Postgres: COPY vs backfill, RSS, tick cost, parity, readers, S3-cold query, derived sensors -> BENCHMARKS.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.parity
	$(BIN)/python -m bench.readers
	$(BIN)/python -m bench.service
	$(BIN)/python -m bench.s3
	$(BIN)/python -m bench.derived
	$(BIN)/python -m bench.iceberg
	$(BIN)/python -m bench.scale

lint: install  ## ruff and mypy on runner/, tests/ and bench/
	$(BIN)/ruff check runner tests bench
	$(BIN)/mypy

clean:  ## remove the venv, dbt's target/ and the demo's data root
	rm -rf $(VENV) target logs .tslake

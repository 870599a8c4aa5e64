# Every target does its own set-up, idempotently: a fresh clone needs only
# `make demo` or `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help setup system-deps kafka-jars test test-unit test-integration test-slow lint typecheck \
        demo bench clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

system-deps:  ## Debian packages the tests use (kcat); Java 17 and Maven must exist
	@command -v java >/dev/null || { echo "make: Java 17+ is required (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "make: Maven is required (apt-get install maven)"; exit 1; }
	@command -v kcat >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then (apt-get install -y -qq kcat >/dev/null 2>&1 || \
			(apt-get update -qq >/dev/null && apt-get install -y -qq kcat >/dev/null)); \
		else sudo apt-get install -y -qq kcat; fi; }

setup: $(STAMP) system-deps kafka-jars  ## Virtualenv, packages, Kafka jars

kafka-jars: $(STAMP)  ## Resolve Apache Kafka jars from Maven Central (cached in ~/.cache)
	$(BIN)/fraud kafka fetch

test: setup  ## The whole suite, integration tests against a real broker included
	$(BIN)/pytest -m "not slow" -q tests

test-unit: $(STAMP)  ## Fast tests, no broker
	$(BIN)/pytest -q tests/unit

test-integration: setup
	$(BIN)/pytest -q -m "integration and not slow" tests/integration

test-slow: setup  ## Long fault tests left out of `make test` (kill -9 of a broker)
	$(BIN)/pytest -q -s -m slow tests

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests load_tests
	$(BIN)/ruff format --check pipeline tests load_tests

typecheck: $(STAMP)
	$(BIN)/mypy

demo: setup  ## The whole story on a local broker
	$(BIN)/fraud demo

bench: setup  ## Benchmarks (not part of `make test`)
	$(BIN)/python load_tests/model_timings.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# streamrec — every job a user or CI runs. `make` alone prints this help.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit lint broker-start broker-stop bench clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install streamrec with its dependencies

demo: $(STAMP) ## Run the live demo: local clusters, trained model, worker, real data streaming
	$(VENV)/bin/streamrec demo

test: $(STAMP) ## Run every test (starts real local Kafka clusters for the integration tests)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run the tests that need no broker
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff over the code, and the import contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

broker-start: $(STAMP) ## Start the local private and public Kafka clusters
	$(VENV)/bin/streamrec broker start

broker-stop: $(STAMP) ## Stop the local clusters
	$(VENV)/bin/streamrec broker stop

clean: ## Stop the local clusters and remove their data (var/)
	-test -x $(VENV)/bin/streamrec && $(VENV)/bin/streamrec broker stop
	rm -rf var

.PHONY: bench-report
bench-report: $(STAMP) ## Write benchmarks/README.md and the figures docs/ quote from benchmarks/results/
	$(PY) -m benchmarks.report

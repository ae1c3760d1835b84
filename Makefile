# spendpipe — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := deploy/kafka/kafka-local.sh
PROMTOOL := $(BIN)/promtool
CHROMIUM := /usr/bin/chromium
TEST_WORKERS ?= 2
# `make test`'s pytest processes (pytest-xdist). Most tests wait on brokers, proxies and deadlines,
# so two keep a 2-core machine busy; each file runs whole in one of them, deploy and e2e first.
export LITELLM_LOCAL_MODEL_COST_MAP := True

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) kafka-jars ## install the venv and fetch the Kafka broker jars from Maven Central

kafka-jars:  # the broker jars from Maven Central (needs no venv: fetched while the venv installs)
	$(KAFKA) fetch

run: setup ## start a local broker and the whole pipeline on embedded ClickHouse, drive LiteLLM traffic, show live spend
	$(BIN)/spendpipe demo

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy spendpipe tests benchmarks dev

unit: $(STAMP) $(PROMTOOL) ## the unit tier alone, in seconds: no broker, no lint (reinstalls the venv only if pyproject.toml changed)
	$(BIN)/pytest tests/unit

test: ## lint, then unit, integration, e2e and deploy tests in two processes (each starts its own broker), the `timing` ones after them alone; lists the 25 slowest of each
	$(MAKE) --no-print-directory --output-sync=target -j3 lint kafka-jars tools
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m 'not timing' --durations=25
	$(BIN)/pytest -m timing --durations=25

tools: $(STAMP)  # what the tiers need beside the venv; one after another, as apt-get takes one lock at a time
	$(MAKE) --no-print-directory $(PROMTOOL) $(CHROMIUM) podman

$(PROMTOOL): | $(STAMP)  # Prometheus's promtool, for the alert-rule tests (taken out of Debian's package)
	dev/install-promtool.sh $@

$(CHROMIUM):  # Debian's chromium, headless, for the HTML report test (skipped when it is installed)
	dev/install-chromium.sh

podman:  # Debian's podman, runc and debootstrap, for `make images` and the deploy tests (when missing)
	dev/install-podman.sh

images: setup podman ## build every image with podman, on local bases when no image registry can be reached (deploy/local/images.sh)
	deploy/local/images.sh

bench: setup ## run the benchmarks and print their table
	$(BIN)/python -m benchmarks

schemas: $(STAMP) ## regenerate schemas/ (JSON Schemas, AsyncAPI, ClickHouse DDL) from the code; tests fail while it is stale
	$(BIN)/python -m dev.schemas

fmt: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## remove local data (keeps the venv and the jar cache)
	rm -rf .data

.PHONY: help setup kafka-jars run lint unit test tools podman images bench schemas fmt clean

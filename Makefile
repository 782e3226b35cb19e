# Developer and CI entry points. `make test` is the one test command.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

# apt-get needs root; use sudo when we are not root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends
REDIS_PACKAGES := redis-server redis-tools redis-sentinel

.PHONY: help run install-dev install-redis install-test-deps test lint bench

help:
	@echo "make run                start a local dev server (memory replay store, dev keys)"
	@echo "make test               install test dependencies, then run the whole test suite"
	@echo "                        (extra pytest arguments: make test PYTEST_ARGS='-k redis')"
	@echo "make lint               ruff check, ruff format --check, mypy"
	@echo "make bench              the benchmark suite, one table (make bench BENCH_ARGS=--quick)"
	@echo "make install-test-deps  redis-server (apt) and the dev virtualenv"
	@echo "make clients-go / clients-java / proto-check   see clients/clients.mk"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

run: $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python scripts/repair_otel_proto.py
	$(BIN)/dpop-verifier dev init
	$(BIN)/dpop-verifier serve --config .dpop-dev/config.json

install-dev: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python scripts/repair_otel_proto.py

# A real redis-server for the adapter tests. The package's service is not started: a
# temporary policy-rc.d denies it (only if none exists), and the tests start their own.
install-redis:
	@if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then \
		echo "redis-server: $$(redis-server --version)"; \
	else \
		set -e; \
		apt-cache show redis-server >/dev/null 2>&1 || $(APT_GET) update; \
		own_policy=no; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d; \
			own_policy=yes; \
		fi; \
		status=0; \
		$(APT_GET) install $(REDIS_PACKAGES) \
			|| { $(APT_GET) update && $(APT_GET) install $(REDIS_PACKAGES); } \
			|| status=$$?; \
		if [ $$own_policy = yes ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; \
	fi

install-test-deps: install-redis install-dev install-client-deps

test: install-test-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The benchmark suite (docs/performance.md): the service pinned to one core, one table.
bench: install-redis install-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy verifier
	$(BIN)/mypy --config-file clients/python/pyproject.toml clients/python/src

include clients/clients.mk

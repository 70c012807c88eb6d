# Every target is idempotent and cheap once done; `make test` works on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.txt
LOCK_VENV := .venv-lock
, := ,
UV_VERSION := 0.13.10
AUTHSERVER := tests/authserver

.PHONY: setup lock cluster cluster-oldest kind helm actionlint keycloak promtool image demo demo-down lint test unit bench bench-operator crds docs chart-readme
setup: $(VENV)/.installed $(AUTHSERVER)/node_modules/.installed

# Every Python package (runtime, dev extra, setuptools, wheel and pip) comes from the lock
# requirements/dev.txt, checked against its hashes; the project itself is then installed
# over them without fetching anything (`make lock` renews the lock).
$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# Recreates the three locks, for every platform and Python >= 3.11, with uv (pinned, in
# its own venv .venv-lock/):
#   requirements/dev.txt      pyproject.toml's dependencies, its dev extra and
#                             requirements/build.in: what `make setup` installs
#   requirements/runtime.txt  pyproject.toml's dependencies only: what the image installs
#   requirements/build.txt    requirements/build.in only: the image's wheel build backend
# Pins already in the dev lock stay while they still fit; `make lock LOCK_FLAGS=--upgrade`
# moves everything to the newest releases, LOCK_FLAGS='--upgrade-package NAME' only NAME.
# The runtime and build locks take the dev lock's pins (uv's preferences), so the image
# installs the versions the tests ran with (tests/packaging checks both). An unchanged
# lock is left untouched.
LOCK_FLAGS ?=
RUNTIME_LOCK := requirements/runtime.txt
BUILD_LOCK := requirements/build.txt
# $(call compile,OUTPUT,PREFERENCES,WHAT IT HOLDS,UV ARGUMENTS,UV FLAGS NOT IN THE HEADER)
define compile
	cp $(2) $(1).new # its pins are uv's preferences
	$(LOCK_VENV)/bin/uv pip compile $(4) --generate-hashes --universal \
		--python-version 3.11 --no-header --quiet $(5) --output-file $(1).new
	{ printf '%s\n' '# $(3).' '# Made by `make lock` (uv==$(UV_VERSION)):' \
		'#   uv pip compile $(4) --generate-hashes' \
		'#     --universal --python-version 3.11' \
		'# Do not edit by hand.'; cat $(1).new; } > $(1).tmp
	rm $(1).new
	if cmp -s $(1).tmp $(1); then rm $(1).tmp; echo "$(1): unchanged"; \
	else mv $(1).tmp $(1); echo "$(1): written"; fi
endef
lock: $(LOCK_VENV)/.uv-$(UV_VERSION)
	[[ -f $(LOCK) ]] || : > $(LOCK)
	$(call compile,$(LOCK),$(LOCK),What `make setup` installs (pip --require-hashes),pyproject.toml requirements/build.in --extra dev,$(LOCK_FLAGS))
	$(call compile,$(RUNTIME_LOCK),$(LOCK),The runtime dependencies the image installs (pip --require-hashes),pyproject.toml)
	$(call compile,$(BUILD_LOCK),$(LOCK),The build backend that makes the wheel in the image (pip --require-hashes),requirements/build.in)

$(LOCK_VENV)/.uv-$(UV_VERSION):
	rm -rf $(LOCK_VENV)
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	touch $@

$(AUTHSERVER)/node_modules/.installed: $(AUTHSERVER)/package.json $(AUTHSERVER)/package-lock.json
	cd $(AUTHSERVER) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Builds etcd, kube-apiserver and kube-controller-manager from Go modules
# into a cache keyed by version (seconds when already built).
cluster:
	bash tests/cluster/build.sh

# The oldest supported Kubernetes (tests/cluster/versions.env), built the same way.
OLDEST_KUBERNETES := $(shell sed -n 's/^OLDEST_KUBERNETES_VERSION=//p' tests/cluster/versions.env)
cluster-oldest:
	CLUSTER_KUBERNETES_VERSION=$(OLDEST_KUBERNETES) bash tests/cluster/build.sh

# A Docker engine (Debian's docker.io, started here if none answers), kind and a kind
# node image (kindest/node where a registry answers, else built offline from the
# binaries above); cached by version. See tests/e2e/README.md.
kind: cluster
	bash tests/e2e/build.sh

# actionlint (with Debian's shellcheck where it can be installed), built from its Go
# module into a cache keyed by version: tests/packaging checks .github/workflows with it.
actionlint:
	bash tests/packaging/actionlint.sh >/dev/null

# Keycloak's distribution (tests/keycloak/versions.env), fetched with Maven into a cache
# keyed by version; the tests run it on the machine's Java 17.
keycloak:
	bash tests/keycloak/build.sh

# promtool, built from the Prometheus Go module into a cache keyed by version: the
# chart's alerts and dashboard queries are checked and unit-tested with it.
promtool:
	bash tests/monitoring/build.sh >/dev/null

# helm, built from the Go module proxy into a cache keyed by its pinned version.
helm:
	bash tests/e2e/helm.sh >/dev/null

# The operator image (Dockerfile): python:3.12-slim (by digest) where it can be pulled, else a
# Python base made from Debian packages (deploy/image/base.sh). IMAGE=tag to rename.
image:
	bash tests/e2e/engine.sh
	bash deploy/image/build.sh $(IMAGE)

# A kind cluster with the operator (Helm chart), an authorization server and the
# examples; prints what a workload sees. `make demo-down` deletes it all.
demo: setup kind helm
	$(PY) -m demo up

demo-down: $(VENV)/.installed
	$(PY) -m demo down

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(VENV)/bin/pytest tests/unit

test: setup cluster cluster-oldest kind helm actionlint keycloak promtool lint
	$(VENV)/bin/pytest
	CLUSTER_KUBERNETES_VERSION=$(OLDEST_KUBERNETES) $(VENV)/bin/pytest tests/api tests/operator -m "not keycloak" -p no:cacheprovider

bench: setup
	$(PY) -m bench

# The operator against a control plane it starts (minutes; see BENCHMARKS.md).
# N=1000: make bench-operator OPERATOR_CASE=operator-1000
# The issuance case alone, in rounds (the spread): OPERATOR_CASE=operator-issuance-100
# (or operator-issuance-1000)
# 10 000 tokens, steady state only: make bench-operator OPERATOR_CASE=operator-steady-10000
# 1000 renewals of 20 s tokens: make bench-operator OPERATOR_CASE=operator-renewal-1000
# (of 10 min tokens: OPERATOR_CASE=operator-renewal-1000-10m; 10 000 of them:
# OPERATOR_CASE=operator-renewal-10000-10m)
# 50 renewals beside 50 requests of a hung server: OPERATOR_CASE=operator-hung
# (without the per-server share: OPERATOR_CASE=operator-hung-unshared)
OPERATOR_CASE ?= operator
bench-operator: setup cluster
	$(PY) -m bench $(OPERATOR_CASE)

# Regenerates crds/ from the pydantic models, and the chart's copy of them (files/crds,
# which templates/crds.yaml installs and upgrades; a unit test
# and a chart test fail while they differ).
crds: $(VENV)/.installed
	$(PY) -c 'import pathlib, oauth2_token_operator.api.crd as c; c.write_all(pathlib.Path("crds"))'
	cp crds/*.yaml deploy/helm/oauth2-token-operator/files/crds/

# Rewrites the values table of the chart's README from values.yaml's comments (a chart
# test fails while it is stale).
chart-readme: $(VENV)/.installed
	$(PY) deploy/helm/values_readme.py

# Regenerates docs/reference.md from the same models (a unit test fails while they differ).
docs: $(VENV)/.installed
	$(PY) -c 'import pathlib, oauth2_token_operator.api.reference as r; r.write(pathlib.Path("docs/reference.md"))'

# loanbook developer commands. `make up` runs the system, `make test` runs the tests; both install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv || echo $(HOME)/.local/bin/uv)
PROTO_FILES := $(shell find protos -name '*.proto' | sort)

.PHONY: help install up test test-unit lint typecheck proto proto-check rules-check lock-check deploy-check \
	compose-check k8s-check cfn-check bench clean-state

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## install uv, the locked Python dependencies and the npm tools (idempotent)
	@bash scripts/bootstrap.sh

up: install ## start PostgreSQL, DynamoDB Local, the three services and the gateway; Ctrl-C stops all
	@$(PY) -m devstack up

test: install ## run the whole test suite against real PostgreSQL and DynamoDB Local
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## the quick loop: unit tests only (no stores, no processes; well under 30 s)
	@$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

lint: install ## ruff (lint + format check), buf lint and the import layering (import-linter)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@npx --no-install buf lint
	@$(VENV)/bin/lint-imports --no-cache

typecheck: install ## mypy --strict on our code (generated code excluded)
	@$(VENV)/bin/mypy

proto: install ## regenerate Python code and type stubs from protos/ into gen/python
	@rm -rf gen/python/loanbook
	@mkdir -p gen/python
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc \
		-I protos -I third_party/protos \
		--python_out=gen/python --mypy_out=quiet:gen/python \
		--grpc_python_out=gen/python --mypy_grpc_out=quiet:gen/python \
		$(PROTO_FILES)
	@find gen/python/loanbook -type d -exec sh -c 'test -f "$$1/__init__.py" || : > "$$1/__init__.py"' _ {} \;
	@echo "generated $$(find gen/python -name '*.py*' | wc -l) files in gen/python"

proto-check: proto ## fail when committed generated code differs from what the protos produce
	@if [ -n "$$(git status --porcelain -- gen/python)" ]; then \
		git status --porcelain -- gen/python; git --no-pager diff --stat -- gen/python; \
		echo "generated code drifted from protos/: run 'make proto' and commit gen/python" >&2; exit 1; \
	fi
	@echo "generated code matches protos/"

rules-check: install ## promtool: check the Prometheus config and rules, run the rule unit tests (deploy/prometheus)
	@command -v promtool >/dev/null 2>&1 || { echo "rules-check: 'promtool' not found — install the Debian package 'prometheus'" >&2; exit 1; }
	@promtool check rules deploy/prometheus/rules/*.yml
	@promtool check config deploy/prometheus/prometheus.yml
	@promtool test rules deploy/prometheus/tests/*.yml

lock-check: install ## the runtime lock (what the image installs) is the dev lock's runtime part, version for version
	@tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
		$(UV) pip compile pyproject.toml -c requirements.lock --no-header --no-annotate -q -o "$$tmp" && \
		{ diff -u requirements.runtime.lock "$$tmp" || { echo "requirements.runtime.lock drifted: see docs/development.md" >&2; exit 1; }; }
	@echo "requirements.runtime.lock matches requirements.lock"

deploy-check: compose-check k8s-check cfn-check ## validate every deployment artefact (compose, Kubernetes, CloudFormation)

cfn-check: install ## cfn-lint the CloudFormation templates (deploy/aws): the DynamoDB tables and the IAM policies
	@$(VENV)/bin/cfn-lint --non-zero-exit-code informational deploy/aws/*.yaml
	@echo "deploy/aws templates pass cfn-lint"

k8s-check: install ## render the Kubernetes overlays and their Jobs (kubectl kustomize); validate for Kubernetes 1.31
	@command -v kubectl >/dev/null 2>&1 || { echo "k8s-check: 'kubectl' not found — install kubectl (it renders the kustomizations)" >&2; exit 1; }
	@version=1.31; for dir in overlays/local overlays/local/jobs overlays/production overlays/production/jobs; do \
		rendered=$$(kubectl kustomize deploy/kubernetes/$$dir) || { echo "k8s-check: deploy/kubernetes/$$dir does not render" >&2; exit 1; }; \
		printf '%s\n' "$$rendered" | $(VENV)/bin/kubernetes-validate --kubernetes-version $$version --strict --quiet - \
			|| { echo "k8s-check: deploy/kubernetes/$$dir is not valid Kubernetes $$version" >&2; exit 1; }; \
		echo "deploy/kubernetes/$$dir: valid for Kubernetes $$version"; \
	done

compose-check: install ## deploy/compose.yaml against the Compose Specification, and its Prometheus config (promtool)
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	@command -v promtool >/dev/null 2>&1 || { echo "compose-check: 'promtool' not found — install the Debian package 'prometheus'" >&2; exit 1; }
	@promtool check config deploy/prometheus/compose.yml

bench: install ## run every benchmark (BENCH_SIZE=quick, the default, or full); reports into bench/results/
	@BENCH_SIZE="$(BENCH_SIZE)" $(PY) -m bench

clean-state: ## remove local PostgreSQL/DynamoDB state (.devstack)
	@rm -rf .devstack

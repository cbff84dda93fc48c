# Every target bootstraps .venv from uv.lock when it is missing or older than the lock.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced
BIN := $(VENV)/bin
export TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/notes_test

.PHONY: run worker test lint format migrate clean

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

run: $(STAMP) ## serve the API with the embedded worker (SQLite under ./data unless DATABASE_URL)
	$(BIN)/notes-api serve

worker: $(STAMP) ## a standalone worker on DATABASE_URL
	$(BIN)/notes-api worker

migrate: $(STAMP)
	$(BIN)/notes-api migrate

test: $(STAMP) ## the whole suite, Postgres included when TEST_DATABASE_URL answers
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests migrations
	$(BIN)/ruff check --fix src tests migrations

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

# The two set-up commands are `make up` and `make test`; everything else is installed by them.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: up test lint bench install fmt clean stack-deps

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

up: install
	$(BIN)/eventmart up

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/eventmart schemas check

# Java, Maven, PostgreSQL and the pinned Kafka/Cassandra jars for the distributed profile.
stack-deps:
	bash infra/bootstrap.sh

test: lint stack-deps
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

fmt: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) $(TOOLS) .eventmart .pytest_cache .mypy_cache .ruff_cache

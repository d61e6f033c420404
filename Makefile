# invoice-bridge: every target bootstraps .venv (Python 3.12, the Lambda runtime) on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# sam build looks for python3.12 and pip on PATH: the venv provides both.
export PATH := $(BIN):$(PATH)
export AWS_DEFAULT_REGION ?= eu-west-1
export SAM_CLI_TELEMETRY := 0
export SAM_CLI_DISABLE_UPDATE_CHECK := 1

# Python 3.12: an explicit PYTHON312, else python3.12 on PATH, else the newest pyenv 3.12.x.
PYTHON312 ?= $(shell bash tools/find-python312.sh)

.PHONY: help demo chaos test lint typecheck validate unit integration e2e build bench deploy clean

help:
	@echo "make demo    run the whole pipeline locally against the sandbox platforms"
	@echo "make chaos   200 objects through the local stack with every sandbox peer faulting (SEED=n; minutes)"
	@echo "make test    lint, typecheck, sam validate --lint and every test"
	@echo "make build   sam build"
	@echo "make bench   print the benchmark figures"
	@echo "make deploy  sam deploy (guided the first time)"

# Incremental: a changed pyproject.toml re-runs pip in the existing venv (fast when nothing changed);
# the venv is only created when missing or not Python 3.12, never deleted under running processes.
$(VENV)/.installed: pyproject.toml layers/common/requirements.txt
	@if ! $(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then \
	  test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it (e.g. 'pyenv install 3.12') or set PYTHON312=/path/to/python3.12" >&2; exit 1; }; \
	  echo "creating $(VENV) with $(PYTHON312)"; \
	  rm -rf $(VENV) && "$(PYTHON312)" -m venv $(VENV); \
	fi
	@echo "installing the project and its development tools into $(VENV) (a minute or two on a fresh machine)"
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e '.[dev]'
	touch $@

.venv: $(VENV)/.installed

demo: .venv
	$(BIN)/invoice-bridge local demo

# A seed repeats a run's mix and each peer's fault decisions; LOCAL_FAULTS overrides the default faults.
SEED ?= 1
chaos: .venv
	$(BIN)/python -m sandbox.chaos --seed $(SEED)

lint: .venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: .venv
	$(BIN)/mypy layers/common/invoice_bridge sandbox ops functions tests bench

validate: .venv
	$(BIN)/sam validate --lint --template-file template.yaml

test: lint typecheck validate
	$(BIN)/python -m pytest

build: .venv
	$(BIN)/sam build --template-file template.yaml

bench: .venv
	$(BIN)/python -m bench

deploy: build
	@if grep -q '^stack_name' samconfig.toml; then $(BIN)/sam deploy; else $(BIN)/sam deploy --guided; fi

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache

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

.PHONY: help demo chaos test lint typecheck validate unit integration e2e build bench deploy clean mutation

help:
	@echo "make demo    run the whole pipeline locally against the sandbox platforms"
	@echo "make chaos   200 objects through the local stack with every sandbox peer faulting (SEED=n; minutes)"
	@echo "make test    lint, typecheck, sam validate --lint and every test"
	@echo "make build   sam build"
	@echo "make bench   print the benchmark figures"
	@echo "make deploy  sam deploy (guided the first time; PARAMS='Key=Value ...' to change parameters)"
	@echo "make mutation  mutation testing (mutmut) of the layer and the local stack; prints the score last"

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

# lint-imports: the contracts in pyproject.toml ([tool.importlinter]): no sandbox peer imports the product, and the
# layer imports neither the local stack, the operator tools nor the handlers.
lint: .venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: .venv
	$(BIN)/mypy layers/common/invoice_bridge sandbox ops functions tests bench

validate: .venv
	$(BIN)/sam validate --lint --template-file template.yaml

test: lint typecheck validate
	$(BIN)/python -m pytest

# Mutation testing has its own venv: mutmut 3.8 needs click>=8.4.2, aws-sam-cli pins click 8.1.8. It gets
# the runtime dependencies, the dev extras without aws-sam-cli, and mutmut; not the project itself (an
# editable install would let tests import the unmutated layer instead of mutmut's copy).
MUTATION_VENV := .venv-mutation
MBIN := $(CURDIR)/$(MUTATION_VENV)/bin
# Four children on two cores: integration tests spend part of their time waiting on sockets and clocks.
MUTATION_JOBS ?= 4

$(MUTATION_VENV)/.installed: pyproject.toml layers/common/requirements.txt
	@if ! $(MBIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then \
	  test -n "$(PYTHON312)" || { echo "Python 3.12 not found: set PYTHON312=/path/to/python3.12" >&2; exit 1; }; \
	  rm -rf $(MUTATION_VENV) && "$(PYTHON312)" -m venv $(MUTATION_VENV); \
	fi
	$(MBIN)/python -m pip install -qq --upgrade pip
	$(MBIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  deps = p["dependencies"] + p["optional-dependencies"]["mutation"] + \
	  [d for d in p["optional-dependencies"]["dev"] if not d.startswith("aws-sam-cli")]; \
	  print("\n".join(deps))' > $(MUTATION_VENV)/requirements.txt
	$(MBIN)/python -m pip install -qq -r $(MUTATION_VENV)/requirements.txt
	touch $@

# Runs in .mutation/, a copy of the tree with the layer at src/invoice_bridge (see [tool.mutmut]). The copy keeps
# the files' times, so a later run keeps mutmut's results for functions that did not change and re-tests every
# mutant not killed last time; MUTATION_FRESH=1 starts over.
MUTATION_TREE := pyproject.toml samconfig.toml template.yaml README.md functions events layers sandbox tests ops bench docs tools

mutation: $(MUTATION_VENV)/.installed
	@if [ -n "$(MUTATION_FRESH)" ]; then rm -rf .mutation; fi
	mkdir -p .mutation && cd .mutation && rm -rf src $(MUTATION_TREE)
	cp -rp $(MUTATION_TREE) .mutation/
	mkdir -p .mutation/src && cp -rp layers/common/invoice_bridge .mutation/src/
	find .mutation -path .mutation/mutants -prune -o -name __pycache__ -prune -exec rm -rf {} +
	@if [ -d .mutation/mutants ]; then cd .mutation && $(MBIN)/python ../tools/mutation_report.py --retest; fi
	cd .mutation && env -u VIRTUAL_ENV PATH="$(MBIN):$$PATH" $(MBIN)/mutmut run --max-children $(MUTATION_JOBS) > mutmut.log 2>&1 \
	  || { tail -n 60 mutmut.log; exit 1; }
	@tail -n 3 .mutation/mutmut.log
	@cd .mutation && $(MBIN)/python ../tools/mutation_report.py

build: .venv
	$(BIN)/sam build --template-file template.yaml

bench: .venv
	$(BIN)/python -m bench

# Your stack's answers live in samconfig.user.toml (git-ignored), not in the tracked samconfig.toml. The
# guided run's parameter_overrides are removed from it: a later deploy then keeps every parameter's deployed
# value (sam passes UsePreviousValue), so a one-off override is not undone. PARAMS='Key=Value ...' changes some.
USER_CONFIG := samconfig.user.toml
deploy: build
	@if [ -f $(USER_CONFIG) ] && grep -q '^stack_name' $(USER_CONFIG); then \
	  $(BIN)/sam deploy --config-file $(USER_CONFIG) $(if $(PARAMS),--parameter-overrides $(PARAMS)); \
	else \
	  $(BIN)/sam deploy --guided --config-file $(USER_CONFIG) && \
	  sed -i.bak '/^parameter_overrides/d' $(USER_CONFIG) && rm -f $(USER_CONFIG).bak; \
	fi

clean:
	rm -rf $(VENV) $(MUTATION_VENV) .mutation .aws-sam .mypy_cache .pytest_cache .ruff_cache

# esdeploy developer commands. `make test` works on a fresh clone: it builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

STAGE ?= dev
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: demo demo-rollback local venv infra-venv test test-fast lint typecheck bench openapi iam-calls clean package deploy destroy infra-check

# pip below 26.3: chalice 1.34 declares pip<26.3, so a newer pip would be downgraded again, with a warning.
# pip compiles the bytecode of every module it installs one file at a time (~70 s of a fresh install here,
# torch and transformers mostly); compileall does the same on every core. Its status is ignored as pip
# ignores it: a few files shipped as .py never compile here (torch has Python 3.12-only test helpers).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26.3"
	$(BIN)/pip install --quiet --no-compile -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $(STAMP)

venv: $(STAMP)

# The whole lifecycle on this machine with real embeddings (README). PORT=8000 to choose the API's
# port (default: a free one), KEEP=1 to keep the work folder (logs, artifacts), SERVING=tei to serve it
# with text-embeddings-inference (the local TEI stand-in) on a CPU instance type.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m esdeploy.demo $(if $(PORT),--port $(PORT)) $(if $(KEEP),--keep) $(if $(SERVING),--serving $(SERVING))

# A bad version rolled back by its alarms within its bake (README): v2 made to misbehave while it bakes.
# BAKE=60 for another bake (seconds); PORT and KEEP as for demo.
demo-rollback: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m esdeploy.demo_rollback $(if $(PORT),--port $(PORT)) $(if $(KEEP),--keep) $(if $(BAKE),--bake-seconds $(BAKE))

# The same as `.venv/bin/esdeploy local --port 8000` (PORT=... for another port).
local: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/esdeploy local --port $(or $(PORT),8000)

# cfn-lint, checkov and parliament pin libraries at versions the app's venv cannot share: their own venv.
$(INFRA_STAMP): requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/pip install --quiet --no-compile -r requirements-infra.txt
	$(INFRA_VENV)/bin/python -m compileall -q -j 0 $(INFRA_VENV)/lib >/dev/null 2>&1 || true
	touch $(INFRA_STAMP)

infra-venv: $(INFRA_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy app.py chalicelib serving esdeploy

# A fresh clone's `make test` stays well inside CI's 12 minutes (docs/testing.md has the runs): the two
# venvs install side by side, and mypy (a cold cache: most of a minute) checks the code while the tests
# run; its report follows theirs, and either failing fails `make test`.
PYTEST_ALL := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -n auto --dist loadfile \
	--no-loadscope-reorder --durations=15

test:
	$(MAKE) --no-print-directory -j2 $(STAMP) $(INFRA_STAMP)
	$(BIN)/ruff check .
	@$(BIN)/mypy app.py chalicelib serving esdeploy > $(VENV)/mypy.log 2>&1 & typing=$$!; \
	echo "$(PYTEST_ALL)"; $(PYTEST_ALL); tests=$$?; \
	wait $$typing; typed=$$?; echo "mypy app.py chalicelib serving esdeploy (beside the tests):"; \
	cat $(VENV)/mypy.log; [ $$tests -eq 0 ] && [ $$typed -eq 0 ]

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not e2e"

bench: $(STAMP)
	$(BIN)/python bench/coldstart.py

# docs/openapi.json from the routes and the pydantic models (a test fails when it is stale).
openapi: $(STAMP)
	$(BIN)/python -m esdeploy.contract

# esdeploy/iam/code_calls.json, what each function's code asks IAM for (esdeploy doctor simulates it),
# from the IAM tests' lifecycle (a test fails when it is stale).
iam-calls: $(STAMP)
	ESDEPLOY_WRITE_IAM_CALLS=1 $(BIN)/python -m pytest -p no:xdist -q tests/iam/test_sagemaker_lifecycle_calls.py tests/iam/test_endpoint_log_retention.py

# ---- AWS (docs/infra.md) ----
package: $(STAMP)
	infra/package.sh $(STAGE)

deploy: $(STAMP)
	ALARM_EMAIL="$(ALARM_EMAIL)" infra/deploy.sh $(STAGE)

destroy:
	infra/destroy.sh $(STAGE)

infra-check: $(STAMP) $(INFRA_STAMP)
	infra/package.sh dev
	infra/package.sh prod
	$(INFRA_VENV)/bin/cfn-lint out/dev/sam.yaml out/prod/sam.yaml
	$(INFRA_VENV)/bin/checkov --config-file infra/.checkov.yaml -f out/dev/sam.yaml -f out/prod/sam.yaml
	$(INFRA_VENV)/bin/python infra/lint_iam.py out/dev/sam.yaml out/prod/sam.yaml

clean:
	rm -rf $(VENV) $(INFRA_VENV) out .pytest_cache .mypy_cache .ruff_cache build dist

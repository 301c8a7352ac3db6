# Agent Society - the two commands of the quick start, and a few more.
#
#   make run    set up .venv if needed, then run the default society on a managed broker
#   make test   set up .venv if needed, then run the whole test suite (not the container tests)
#   make images            build the image, and stand-ins of the base images that cannot be
#                          pulled (tests/containers/build-images.sh; needs dockerd, and root)
#   make test-containers   images, then the real docker-compose.yml started end to end
#
# torch is installed explicitly, pinned, before the project: a bare `torch` requirement would
# pull a CUDA build of several GB, while torch==2.13.0 is a CPU build (from local disk on the
# project's machines).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
SCENARIO ?= cartpole
RUN_ARGS ?=

.PHONY: run test lint typecheck check bench clean help sumo images test-containers

help:
	@echo "make run | test | lint | typecheck | check | bench | clean | images | test-containers"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# The optional SUMO extra (about 440 MB): the sumo-traffic scenario and its tests.
sumo: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,sumo]"

run: $(STAMP)
	$(BIN)/society run --scenario $(SCENARIO) $(RUN_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not containers and not isolated'
	$(BIN)/python -m pytest -q -m isolated

images:
	tests/containers/build-images.sh

test-containers: $(STAMP) images
	$(BIN)/python -m pytest -q -m containers tests/containers

lint: $(STAMP)
	$(BIN)/ruff check agents tests bench
	$(BIN)/ruff format --check agents tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache

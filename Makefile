# Two entry points (see README): `make repro` runs the experiment, `make test` runs the tests.
# Each creates or reuses the virtual environment .venv by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup repro test smoke bench push pull clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	@test -d .dvc || { dvc init -q && git add .dvc; }
	@dvc config core.analytics false

repro: setup
	dvc repro
	dvc metrics show

# two workers, one torch thread each (tests/conftest.py); a file's tests stay on one worker (module fixtures)
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

smoke: setup
	$(BIN)/python scripts/smoke.py

bench: setup
	$(BIN)/python benchmarks/moe_layer.py

push: setup
	dvc push

pull: setup
	dvc pull

clean-venv:
	rm -rf $(VENV)

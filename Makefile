# Two commands for a new user: `make demo` and `make test`. Each creates .venv on first use.
# Everything else: setup, weights, bench, ablation, lab, clean-venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# extra pip options, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" for the CPU wheels
PIP_ARGS ?=

.PHONY: setup weights demo test bench ablation lab clean-venv

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes (the stamp is newer otherwise).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install $(PIP_ARGS) -e '.[dev]'
	@touch $(STAMP)

# Offline-first pretrained weights (VGG16 / AlexNet features, FID Inception) into data/weights/.
weights: $(STAMP)
	$(PY) -m lib.pretrained fetch

demo: weights
	$(PY) -m lib demo

test: weights
	$(PY) -m pytest

bench: weights
	$(PY) -m benchmarks.run_all

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)

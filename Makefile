# Two commands for a new user: `make demo` and `make test`. Each creates .venv on first use.
# Everything else: setup, weights, bench, ablation, lab, app, strip, pin, clean-venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# extra pip options, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" for the CPU wheels
PIP_ARGS ?=

.PHONY: setup weights demo test bench ablation lab app strip pin clean-venv

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes (the stamp is newer otherwise).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install $(PIP_ARGS) -e '.[dev]'
	@touch $(STAMP)

# Offline-first pretrained weights (VGG16 / AlexNet features, FID Inception) into data/weights/.
weights: $(STAMP)
	$(PY) tools/fetch_weights.py

# Every notebook in the demo profile (papermill; executed copies in executed/demo/, figures in figures/),
# one line each, then the README figures, last the shipped model on the bundled photos (figures/demo_*).
demo: weights
	$(PY) -m lib.demo --profile demo

# The whole suite on every core (pytest-xdist, idle workers take queued tests from busy ones; TEST_WORKERS=0: in this process, in order).
TEST_WORKERS ?= auto
test: weights
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# A grid of training runs and its results table: make ablation GRID=losses PROFILE=cpu (smoke | cpu | full).
GRID ?= losses
PROFILE ?= cpu
ablation: weights
	$(PY) -m lib ablate --grid $(GRID) --profile $(PROFILE)

bench: weights
	$(PY) -m benchmarks.run_all

# Registers the venv's kernel (for other Jupyter installs too) and opens JupyterLab on the notebooks.
# LAB_ARGS for extra options, e.g. LAB_ARGS="--no-browser --port 8890"; as root (containers) --allow-root is added.
LAB_ARGS ?=
lab: $(STAMP)
	$(PY) -m ipykernel install --user --name facecolor --display-name "facecolor (.venv)"
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The demo notebook (09) as a standalone page with Voila (the app extra, installed on first use; no test needs it).
# It serves a copy in executed/app/ (papermill --prepare-only) whose figures and saved results stay there, not in figures/.
# APP_PROFILE: the notebook's profile (smoke: the page is ready in about a minute; demo: 64 test faces scored first).
# APP_ARGS for Voila's options, e.g. APP_ARGS="--no-browser --port 8867" (default port 8866).
APP_PROFILE ?= smoke
APP_ARGS ?=
APP_DIR := executed/app
app: $(STAMP)
	@test -x $(VENV)/bin/voila || $(PY) -m pip install $(PIP_ARGS) -e '.[dev,app]'
	@mkdir -p $(APP_DIR)
	$(PY) -m papermill --prepare-only --log-level WARNING notebooks/09_interactive_demo.ipynb $(APP_DIR)/09_interactive_demo.ipynb \
		-p profile $(APP_PROFILE) -p figures_dir $(CURDIR)/$(APP_DIR)/figures -p save_dir $(CURDIR)/$(APP_DIR)/colorized
	$(VENV)/bin/voila $(APP_DIR)/09_interactive_demo.ipynb $(APP_ARGS)

# Notebooks are stored without outputs (tests/test_notebooks.py fails otherwise).
strip: $(STAMP)
	$(PY) -m nbstripout notebooks/*.ipynb

# Pin the outputs of the `# NBVAL_CHECK_OUTPUT` cells: make pin NB=01 (default: every notebook).
pin: strip
	$(PY) -m lib.demo --profile smoke --pin $(NB)

clean-venv:
	rm -rf $(VENV)

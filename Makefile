# egr: two commands on a fresh machine.
#   make demo   create .venv if missing, install, run the main job on embedded defaults
#   make test   create .venv if missing, install, lint (style, layers, types), run the whole suite (CPU-only, offline;
#               installs chromium + chromium-driver with apt when missing, for the browser tests)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.egr-installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect-home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install lint clean browser

# The browser tests of `egr review` drive Debian's Chromium headless (selenium + chromedriver).
# Installed with apt only when missing (needs root, as on a fresh CI machine).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/egr demo --out egr-out/demo

# Style, the layer contract (pyproject.toml [tool.importlinter]) and types (egr_core, egr_pipeline).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) egr-out .prefect-home .pytest_cache

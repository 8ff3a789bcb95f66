# Registration-token refresher for MicroPython. `make help` lists the targets.
# Every target that needs a tool depends on .venv/.ok, so a fresh clone sets itself up.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BOARD ?= unix
PORT ?=
ROTATIONS ?= 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup test lint typecheck pytest run server clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.ok ## create .venv with the pinned host tools (idempotent)

$(VENV)/.ok: requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: lint typecheck pytest ## ruff, mypy and every pytest tier

lint: $(VENV)/.ok ## ruff over everything
	$(BIN)/ruff check .

typecheck: $(VENV)/.ok ## mypy: host code, and firmware against the board stubs
	$(BIN)/mypy

pytest: $(VENV)/.ok ## every pytest tier (CPython, then the real MicroPython unix port)
	$(BIN)/pytest

clean: ## remove the venv and caches
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

# ---- run / server (issue 2) ----
run: $(VENV)/.ok ## server + unix board rotating the token live (ROTATIONS=N stops after N)
	$(BIN)/python tools/run_demo.py --rotations $(ROTATIONS)


# ---- boards: flash / deploy / provision / repl / logs (issue 5) ----

# ---- power cut sweep (issue 4) ----

# ---- benchmarks (issue 6) ----

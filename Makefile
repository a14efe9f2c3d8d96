# alertgw — the two commands a technician needs: `make demo` and `make test`.
# Both set everything up on a fresh machine (virtualenv, packages, Mosquitto for tests).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench mosquitto clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "alertgw needs Python >= 3.11")'
	@bash scripts/ensure-venv.sh $(PYTHON) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: run the daemon on config/demo.yaml (simulated night, console handsets). Ctrl-C stops it.
demo: $(STAMP)
	$(BIN)/alertgw run config/demo.yaml

## test: lint, type-check and run every test tier against a real Mosquitto.
test: $(STAMP) mosquitto lint typecheck pytest

mosquitto:
	@bash scripts/ensure-mosquitto.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

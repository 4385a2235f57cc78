# The two commands a newcomer needs:  make run   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: run test install lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the app on http://127.0.0.1:$(PORT) with SQLite and demo data.
run: install
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi seed-demo
	$(BIN)/flask --app wsgi run --host 127.0.0.1 --port $(PORT)

## Install what the tests need and run them (PostgreSQL too when TEST_DATABASE_URL is set).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis .ruff_cache *.egg-info

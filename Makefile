# The two commands a newcomer needs:  make run   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
STAMP  := $(VENV)/.installed
FLASK  := $(BIN)/flask --app wsgi

# Without Stripe keys, `make run` starts localstripe (a fake Stripe server, for development
# only) on this port and points the app at it: everything works offline with test cards.
LOCALSTRIPE_PORT ?= 8420

.PHONY: run test install lint format clean bench load

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the app on http://127.0.0.1:$(PORT) with SQLite and demo data.
run: install
	@set -e; \
	if [ -z "$$STRIPE_SECRET_KEY" ]; then \
	  echo "No STRIPE_SECRET_KEY: starting localstripe on 127.0.0.1:$(LOCALSTRIPE_PORT) (test mode, offline)"; \
	  export STRIPE_SECRET_KEY=sk_test_offline_demo STRIPE_PUBLISHABLE_KEY=pk_test_offline_demo \
	         STRIPE_WEBHOOK_SECRET=whsec_offline_demo STRIPE_API_BASE=http://127.0.0.1:$(LOCALSTRIPE_PORT); \
	  $(BIN)/python -m tests.support.localstripe_server --port $(LOCALSTRIPE_PORT) \
	    --webhook-url http://127.0.0.1:$(PORT)/webhooks/stripe --webhook-secret whsec_offline_demo & \
	  trap "kill $$! 2>/dev/null" EXIT INT TERM; \
	  for i in $$(seq 1 50); do $(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(LOCALSTRIPE_PORT)/js.stripe.com/v3/')" 2>/dev/null && break; sleep 0.2; done; \
	fi; \
	$(FLASK) db upgrade; \
	$(FLASK) seed-demo; \
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

## Install what the tests need and run them (PostgreSQL too when TEST_DATABASE_URL is set).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Pages under load (wrk, PostgreSQL on 127.0.0.1) against a bare Flask ceiling; figures in
## docs/performance.md. BENCH_ARGS=--quick for a short run.
bench: install
	$(BIN)/python bench/pages.py $(BENCH_ARGS)

## Mixed traffic at 50 requests/s for 2 minutes, then 200/s for 30 s (LOAD_ARGS=--quick: 30 s).
load: install
	$(BIN)/python bench/load.py $(LOAD_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis .ruff_cache *.egg-info

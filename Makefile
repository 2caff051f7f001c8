# Each target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev dbt bench lock clean

# The environment is installed exactly as locked: pyproject.toml declares compatible ranges (we are
# also a library), requirements.lock pins every package the tests ran on.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,dbt]'
	touch $(STAMP)

## The main job, offline: last 7 days of every bundled sandbox workspace into the warehouse, data/lake
demo: $(STAMP)
	DAGSTER_HOME=$(CURDIR) $(BIN)/moestats demo

## Lint, format check and the test suite (beside a throwaway PostgreSQL server and S3-compatible
## server it starts and stops)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MOTO_SERVER=$(BIN)/moto_server bash scripts/with-postgres bash scripts/with-s3 \
	  $(BIN)/python -m pytest -n auto --maxprocesses 4 --dist worksteal

## The Dagster UI and daemon (`dg dev`, this folder is a dg project) on the instance the demo writes
## to, at http://127.0.0.1:$(PORT) (make dev PORT=3001 when 3000 is taken), with the example dbt
## project's models downstream of ours (MOESTATS_DBT_PROJECT= leaves them out)
PORT ?= 3000
MOESTATS_DBT_PROJECT ?= examples/dbt_marketing
dev: $(STAMP)
	DAGSTER_HOME=$(CURDIR) VIRTUAL_ENV=$(CURDIR)/$(VENV) MOESTATS_DBT_PROJECT=$(MOESTATS_DBT_PROJECT) \
	  $(BIN)/dg dev --port $(PORT)

## The example dbt project (examples/dbt_marketing) built by dbt itself on the demo's lake, read-only;
## its models go to data/dbt_marketing.duckdb
dbt: $(STAMP)
	cd examples/dbt_marketing && $(CURDIR)/$(BIN)/dbt build --profiles-dir .

## Benchmarks: prints figures and writes benchmarks/results.json
bench: $(STAMP)
	MOTO_SERVER=$(BIN)/moto_server bash scripts/with-postgres bash scripts/with-s3 $(BIN)/python -m benchmarks.run

## Refresh requirements.lock: the newest versions pyproject.toml allows, resolved in a throwaway
## venv (then run make test before committing it)
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,dbt]'
	{ sed -n '1,3p' requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable \
	  | grep -v '^moestats'; } > requirements.lock.new && mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) data storage history schedules logs .logs_queue .nux .telemetry

# Two commands on a fresh machine: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/bike_sharing.yaml
STAMP := $(VENV)/.installed
# A local copy of the bike-sharing data beside the checkout is used when present (offline machines);
# otherwise the bundled config downloads it from UCI. Override with `make run RETRAIN_DATA=path`.
RETRAIN_DATA ?= $(wildcard ../shared/data/bike_sharing_hourly.csv)
export RETRAIN_DATA

.PHONY: install run test test-fast bench lint clean serve dashboard

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/retrain run --config $(CONFIG)

# Test files are spread over two worker processes; a file's tests stay on one worker, so its
# module fixtures (trained models, server stacks) are built once.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

bench: install
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/drift_scale.py
	$(BIN)/python benchmarks/trigger_latency.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/dask_tuning.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/backtest.py

serve: install
	$(BIN)/retrain serve --config $(CONFIG)

dashboard: install
	$(BIN)/retrain dashboard

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .retrain .pytest_cache

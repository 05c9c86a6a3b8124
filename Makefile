# Set-up: `make demo` and `make test` install everything they need into .venv first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME
# The webserver's and daemon's telemetry upload thread ignores dagster.yaml's `telemetry` setting.
export DAGSTER_DISABLE_TELEMETRY = 1

.PHONY: install demo ui test test-lowest format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt examples/dd_components/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dagster,aws,test]'
	$(BIN)/python -m pip install --quiet --no-deps -e examples/dd_components
# Byte-compiled as pip compiles an installed wheel (an editable install under PYTHONDONTWRITEBYTECODE never is).
	$(BIN)/python -m compileall -q dd_core dd_dagster
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: deployments/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deployments/local/dagster.yaml $@

# The customers example (10,000 records) materialized through Dagster on the local SQLite instance.
demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m dd_dagster.demo examples/customers.yaml --num-records 10000 --buffer-size 1000

# Dagster's UI and daemon on the same instance: http://127.0.0.1:3000
ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Lint and format checks first (seconds), then the suite.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The CLI matrix (and the probe and preview tests) against the lowest versions pyproject.toml
# allows, in a venv of their own built by uv (cached after the first time). About 130 s of CPU with
# the venv cached, 150 s and the downloads without; on 2 idle cores the wall time is about the CPU time.
test-lowest:
	PYTHON=$(PYTHON) bash .ci/lowest_versions

# Format the tree and apply ruff's safe fixes.
format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark in turn (about 30 minutes, most of it the reference generator at 200k records).
bench: install
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/resume_planning.py
	$(BIN)/python bench/export_memory.py
	$(BIN)/python bench/llm_throughput.py
	$(BIN)/python bench/dagster_overhead.py
	$(BIN)/python bench/parallel_runs.py
	$(BIN)/python bench/first_contact.py
	$(BIN)/python bench/storage_throughput.py

clean:
	rm -rf $(VENV) artifacts .bench .dagster_home

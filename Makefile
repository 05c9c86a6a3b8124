# Set-up: `make demo` and `make test` install everything they need into .venv first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dagster,test]'
	touch $(STAMP)

demo: install
	$(BIN)/dd generate examples/customers.yaml --num-records 10000 --artifact-path artifacts --dataset-name customers-demo --resume if_possible

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) artifacts .bench

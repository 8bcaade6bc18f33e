# make demo  : create .venv, install vicreg[test], run the offline demo (digits, CPU: about a minute of
#              training on 2 cores, after an install of a few minutes on a fresh clone)
# make test  : create .venv, install vicreg with test extras, run the whole test suite (what CI runs)
# make test-fast : the suite without the tests marked slow (compilation, end-to-end runs): for working
# make lint  : ruff (lint + import order) and the import-circle check (tools/import_graph.py)
# make docs  : regenerate docs/architecture.md from the modules' docstrings (a test fails when it is stale)
# make gpu-check : on a machine with a GPU and torch installed: CUDA tests, throughput, time to accuracy
#                  -> gpu_check.json (5-10 minutes; uses $(PYTHON) as it is, no venv, no downloads)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint docs gpu-check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vicreg train

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python tools/import_graph.py --quiet

docs: $(STAMP)
	$(BIN)/python tools/architecture.py

gpu-check:  # runs from the checkout (its scripts put src/ on the path); installing is a convenience
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e . || echo "note: vicreg not installed; running from src/"
	$(PYTHON) benchmarks/gpu_check.py --out gpu_check.json

clean:
	rm -rf $(VENV) runs

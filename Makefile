# make demo  : create .venv, install vicreg, run the offline demo (digits, CPU, about a minute)
# make test  : create .venv, install vicreg with test extras, run the test suite
# make gpu-check : on a machine with a GPU and torch installed: CUDA tests, throughput, time to accuracy
#                  -> gpu_check.json (5-10 minutes; uses $(PYTHON) as it is, no venv, no downloads)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test gpu-check clean

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

gpu-check:
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	$(PYTHON) benchmarks/gpu_check.py --out gpu_check.json

clean:
	rm -rf $(VENV) runs

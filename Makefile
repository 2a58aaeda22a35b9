# Two commands do all set-up: `make demo` and `make test` create .venv when it
# is missing. torch is installed pinned *first* (the local CPU wheel), so that
# nothing later can pull another torch with gigabytes of CUDA packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.speechtok-installed
EXTRAS := dev,train,faiss
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: venv test demo lint format bench clean-venv

venv: $(STAMP)

# Re-installs only when setup.py or the constraints change; otherwise a no-op.
$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]" -c constraints.txt
	@touch $@

# The engine tests' Flink and Spark jars: resolved by Maven into ~/.m2 (once;
# without java it says so and the engine tests skip).
test: $(STAMP)
	$(PY) -m engines resolve
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/speechtok demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)

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

.PHONY: venv test test-fast demo lint format bench clean-venv

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

# The lane to run before every commit (~2.5 min on 2 cores): every layer below
# the Beam jobs, in process; no pretrained weights, no JVM. CI runs `make test`.
FAST_TESTS := tests/test_imports.py tests/test_layout.py tests/datastore tests/kmeans \
	tests/tokenizer tests/corpora tests/trainer
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not engine and not gpu" $(FAST_TESTS) $(PYTEST_ARGS)

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

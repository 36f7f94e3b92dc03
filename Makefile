# DualDINOv3 — one command per job. Each target creates .venv and installs what it needs.
#   make demo    set up and run the main job (headless)
#   make test    set up and run the test suite (what CI runs)
#   make bench   set up and print the benchmarks
# GPU users: choose the torch build, e.g.  make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/dualdinov3 demo --out demo-output --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python Testing/benchmarks/bench_backbone.py
	$(BIN)/python Testing/benchmarks/bench_inference.py
	$(BIN)/python Testing/benchmarks/bench_augment.py
	$(BIN)/python Testing/benchmarks/bench_precision.py
	$(BIN)/python Testing/benchmarks/bench_memory.py
	$(BIN)/python Testing/benchmarks/bench_paper.py
	$(BIN)/python Testing/benchmarks/bench_pretrain.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

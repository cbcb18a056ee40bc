# The two commands a newcomer needs: `make test` and `make demo`.
# torch is installed first with a pinned version: on the project's CPU machines pip finds that
# CPU build locally, while an unpinned torch pulls gigabytes of CUDA packages. Users with a GPU
# can pass their own, e.g. `make test TORCH_SPEC="torch>=2.3"`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,hf,ray]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check tracker tests experiments app
	$(BIN)/ruff format --check tracker tests experiments app

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m experiments.toy --root data --run toy
	@echo "Viewer on data/toy/lineage.duckdb: open http://127.0.0.1:8501 (Ctrl-C to stop)"
	$(BIN)/tracker app data/toy/lineage.duckdb --port 8501

bench: $(STAMP)
	$(BIN)/python experiments/bench/sae_speed.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

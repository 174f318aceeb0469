# Every target installs first if needed, so `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SEEDS ?= 10

.PHONY: install run test lint format reproduce-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster,ray,tensorboard,mlflow]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/regexp run

# two pytest workers (pytest-xdist), one a core here; tests that share a resource (the
# Slurm cluster) carry one xdist_group and run in one worker
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

reproduce-all: $(STAMP)
	$(BIN)/python -m regexp.reproduce --seeds $(SEEDS)

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache .ruff_cache

bench: $(STAMP)
	$(BIN)/python -m regexp.bench

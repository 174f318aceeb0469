# Every target installs first if needed, so `make run` and `make test` work on a fresh clone.
# The install is requirements.lock, exactly (versions and hashes), made from pyproject.toml by
# uv (`make lock`); regexp itself is installed editable on top, without dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
SEEDS ?= 10

# uv installs the lock; its own version is pinned here (bootstrapped with the venv's pip)
UV_VERSION := 0.13.9
UV := $(BIN)/uv
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)
# the extras `make` installs; pip users pick their own (README, "Installing")
EXTRAS := dev cluster ray tensorboard mlflow
# `make lock` keeps every pin it can (adding what pyproject.toml gained);
# `make lock LOCK_FLAGS=--upgrade` moves every package to its newest allowed version
LOCK_FLAGS ?=

.PHONY: install lock run test lint format reproduce-all bench clean

$(UV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $(UV_STAMP)

# sync: installs what the lock lists and removes what it does not (uv keeps pip and itself);
# --compile-bytecode writes the .pyc files once, so `import tensorflow` reads bytecode
# (about 4 s) instead of compiling 4,000 modules again in every process where
# PYTHONDONTWRITEBYTECODE is set (about 11 s)
$(STAMP): $(LOCK) pyproject.toml $(UV_STAMP)
	$(UV) pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# for Python >= 3.11 on any platform (--universal: environment markers where they differ)
lock: $(UV_STAMP)
	$(UV) pip compile pyproject.toml --quiet --universal --python-version 3.11 \
		$(addprefix --extra ,$(EXTRAS)) --generate-hashes \
		--custom-compile-command "make lock" $(LOCK_FLAGS) -o $(LOCK)

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

# Set-up and the main jobs. `make demo` and `make test` work on a fresh machine: each builds the
# environment on first use. The environment lives outside the clone, keyed by a hash of the dependency
# list and the torch build, so later clones and CI runs with the same dependencies reuse it; `.venv` links
# to it. TORCH=auto (default): torch's CPU build where no GPU answers, else the CUDA one; TORCH=cpu|cuda.

PYTHON ?= python3
ENV_CACHE ?= $(or $(LAB6_ENV_CACHE),$(HOME)/.cache/lab6)
DEPS_HASH := $(shell $(PYTHON) tools/deps_hash.py)
TORCH ?= auto
BIN := .venv/bin
DEMO_OUT ?= reports/demo

.PHONY: env demo test bench clean

env:
	@PYTHON="$(PYTHON)" TORCH="$(TORCH)" bash tools/make_env.sh "$(ENV_CACHE)" "$(DEPS_HASH)"

# DATA=/path/to/the/course/files draws the course's test.json and new_test.json; without it, the built-in
# synthetic conditions (the files then say so).
demo: env
	$(BIN)/lab6 report --out $(DEMO_OUT) $(if $(DATA),--data-root "$(DATA)")

# ruff, the import layers (lint-imports: pyproject's [tool.importlinter]), then the tests on every core: one pytest worker per core, one torch thread per worker (two threads
# per worker would fight over the cores); the notebooks' kernels run at torch's default thread count.
test: env
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -rs -n auto

bench: env
	$(BIN)/python -m bench.bench_training
	$(BIN)/python -m bench.bench_sampling

clean:
	rm -rf reports/demo .pytest_cache lab6.egg-info

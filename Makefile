# Set-up and the main jobs. `make demo` and `make test` work on a fresh machine: each builds the
# environment on first use. The environment lives outside the clone, keyed by a hash of the dependency
# list, so later clones and CI runs with the same dependencies reuse it; `.venv` links to it.

PYTHON ?= python3
ENV_CACHE ?= $(or $(LAB6_ENV_CACHE),$(HOME)/.cache/lab6)
DEPS_HASH := $(shell $(PYTHON) tools/deps_hash.py)
ENV_DIR := $(ENV_CACHE)/venv-$(DEPS_HASH)
BIN := .venv/bin
DEMO_OUT ?= reports/demo

.PHONY: env demo test bench clean

env:
	@PYTHON="$(PYTHON)" bash tools/make_env.sh "$(ENV_DIR)"

demo: env
	$(BIN)/lab6 report --out $(DEMO_OUT)

test: env
	$(BIN)/python -m pytest -q -rs

bench: env
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_sampling.py

clean:
	rm -rf reports/demo .pytest_cache lab6.egg-info

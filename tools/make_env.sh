#!/usr/bin/env bash
# Build (once) the environment at $1 and point ./.venv at it; then install this clone into it (editable,
# no dependencies: seconds). A half-built environment is never reused: it is marked complete last.
set -euo pipefail
env_dir=$1
python=${PYTHON:-python3}
if [ ! -f "$env_dir/.lab6-complete" ]; then
    echo "building the environment in $env_dir (first time only: several minutes, torch is large)"
    rm -rf "$env_dir"
    mkdir -p "$(dirname "$env_dir")"
    "$python" -m venv "$env_dir"
    "$env_dir/bin/pip" install -q --upgrade pip setuptools wheel
    "$env_dir/bin/pip" install -q -e ".[dev]"
    touch "$env_dir/.lab6-complete"
fi
if [ -e .venv ] && [ ! -L .venv ]; then
    echo ".venv is a real folder here: using it as it is (delete it to use the shared environment)" >&2
else
    ln -sfn "$env_dir" .venv
fi
.venv/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null

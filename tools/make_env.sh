#!/usr/bin/env bash
# Build (once) the environment for this clone and point ./.venv at it; then install this clone into it
# (editable, no dependencies: seconds).
#
#   tools/make_env.sh CACHE_DIR DEPS_HASH      (TORCH=auto|cpu|cuda in the environment; auto by default)
#
# The environment is CACHE_DIR/venv-DEPS_HASH-BUILD, BUILD being the torch build it holds:
# - cpu:  torch's CPU wheels from PyTorch's CPU index (LAB6_TORCH_CPU_INDEX), a fraction of the size
#         (docs/throughput.md#environment-size);
# - cuda: the default wheels (CUDA included, several GB).
# TORCH=auto takes cpu where no NVIDIA GPU answers (`nvidia-smi -L`) and the CPU index can be reached,
# cuda otherwise. The build runs under a lock, so two `make` runs started together build it once: the
# second waits, then reuses it. A virtual environment cannot be moved (its scripts name their own path),
# so it is built in place and marked complete last: a half-built one is never used, and the next run
# deletes and rebuilds it.
set -euo pipefail
cache=$1
deps_hash=$2
python=${PYTHON:-python3}
request=${TORCH:-auto}
cpu_index=${LAB6_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

case "$request" in
    auto|cpu|cuda) ;;
    *) echo "TORCH=$request: choose auto (the default), cpu or cuda" >&2; exit 2 ;;
esac

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
reachable() {  # does the CPU index (a URL, or a file:// mirror) list torch? 5 s at most; no network fails at once
    "$python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.parse, urllib.request
from pathlib import Path
index = sys.argv[1].rstrip("/")
if index.startswith("file:"):
    sys.exit(not (Path(urllib.parse.urlparse(index).path) / "torch").is_dir())
urllib.request.urlopen(index + "/torch/", timeout=5)
EOF
}

build=$request
if [ "$request" = auto ]; then
    build=cuda
    if ! has_gpu; then
        if reachable "$cpu_index"; then
            build=cpu
        else
            echo "no GPU here, but PyTorch's CPU index ($cpu_index) cannot be reached: installing the default" \
                 "torch build (CUDA included, several GB); TORCH=cuda skips this check"
        fi
    fi
elif [ "$request" = cpu ] && ! reachable "$cpu_index"; then
    echo "TORCH=cpu: PyTorch's CPU index $cpu_index cannot be reached. Set LAB6_TORCH_CPU_INDEX to a mirror" \
         "of it, or use TORCH=cuda (the default build, several GB)" >&2
    exit 2
fi
env_dir="$cache/venv-$deps_hash-$build"

failed() {
    echo >&2
    echo "building the environment in $env_dir failed (the error is above); nothing half-built will be used." >&2
    echo "Run the same make command again: it starts the build over. If it fails the same way, check the" >&2
    echo "network and the disk space (df -h $cache), or use another cache folder: LAB6_ENV_CACHE=/some/folder" >&2
}

mkdir -p "$cache"
exec 9>"$env_dir.lock"
if ! flock -n 9; then
    echo "another make is building or updating $env_dir: waiting for it"
    flock 9
fi
if [ ! -f "$env_dir/.lab6-complete" ]; then
    trap failed ERR
    echo "building the environment in $env_dir (first time only: several minutes, torch is large)"
    start=$(date +%s)
    rm -rf "$env_dir"
    "$python" -m venv "$env_dir"
    "$env_dir/bin/pip" install -q --upgrade pip setuptools wheel
    if [ "$build" = cpu ]; then
        # torch==X matches X+cpu, which sorts above X: pip takes the CPU wheel from the extra index.
        "$env_dir/bin/pip" install -q --extra-index-url "$cpu_index" -e ".[dev]"
    else
        "$env_dir/bin/pip" install -q -e ".[dev]"
    fi
    size=$(du -sm "$env_dir" | cut -f1)
    echo "environment built in $(( $(date +%s) - start )) s: $size MB, torch build $build"
    touch "$env_dir/.lab6-complete"
    trap - ERR
fi
if [ -e .venv ] && [ ! -L .venv ]; then
    echo ".venv is a real folder here: using it as it is (delete it to use the shared environment)" >&2
else
    ln -sfn "$env_dir" .venv
fi
# under the lock too: two clones installing themselves into one environment at once would race
.venv/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null

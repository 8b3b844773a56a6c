"""tools/make_env.sh, with a stand-in python whose ``-m venv`` makes a pip that only logs its calls: two builds
started together build once (the second waits on the lock, then reuses the environment), a failed build says
what to do and is never reused, and the torch build (cpu or cuda) is chosen as documented."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "make_env.sh"


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """``python -m venv DIR`` makes DIR/bin/pip, which logs 'start'/'end' around a short sleep (and fails when
    $FAIL_INSTALL is set and it is asked to install the project); anything else runs the real python."""
    pip = textwrap.dedent("""\
        #!/usr/bin/env bash
        echo "start $$ $*" >> "$PIP_LOG"
        sleep 0.5
        echo "end $$" >> "$PIP_LOG"
        if [ -n "${FAIL_INSTALL:-}" ]; then case "$*" in *"[dev]"*) exit 1 ;; esac; fi
        exit 0
        """)
    python = tmp_path / "python"
    python.write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        if [ "$1" = -m ] && [ "$2" = venv ]; then
            mkdir -p "$3/bin"
            cat > "$3/bin/pip" <<'EOF'
        PIP
        EOF
            chmod +x "$3/bin/pip"
            exit 0
        fi
        exec PYTHON "$@"
        """).replace("PIP\n", pip).replace("PYTHON", sys.executable))
    python.chmod(0o755)
    return python


def run_script(clone: Path, cache: Path, python: Path, log: Path, **env) -> subprocess.Popen:
    environment = {**os.environ, "PYTHON": str(python), "PIP_LOG": str(log), "PATH": "/usr/bin:/bin", **env}
    return subprocess.Popen(["bash", str(SCRIPT), str(cache), "abc123"], cwd=clone, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pip_calls(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    for first, second in zip(lines[::2], lines[1::2]):  # no call started while another ran
        assert first.startswith("start") and second == f"end {first.split()[1]}", lines
    return [line.split(" ", 2)[2] for line in lines[::2]]


def test_two_builds_at_once_build_once_under_the_lock(fake_python, tmp_path):
    clones = [tmp_path / "a", tmp_path / "b"]
    for clone in clones:
        clone.mkdir()
    log = tmp_path / "pip.log"
    runs = [run_script(clone, tmp_path / "cache", fake_python, log, TORCH="cuda") for clone in clones]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    joined = "".join(outputs)
    assert joined.count("building the environment in") == 1, joined
    env_dir = tmp_path / "cache" / "venv-abc123-cuda"
    assert (env_dir / ".lab6-complete").is_file()
    assert all((clone / ".venv").resolve() == env_dir.resolve() for clone in clones)
    calls = pip_calls(log)
    assert len(calls) == 4 and sum(".[dev]" in call for call in calls) == 1, calls  # one build, two self-installs


def test_a_failed_build_says_what_to_do_and_is_rebuilt_next_time(fake_python, tmp_path):
    log = tmp_path / "pip.log"
    failed = run_script(tmp_path, tmp_path / "cache", fake_python, log, TORCH="cuda", FAIL_INSTALL="1")
    output = failed.communicate(timeout=60)[0]
    assert failed.returncode != 0
    assert "failed" in output and "Run the same make command again" in output, output
    assert not (tmp_path / "cache" / "venv-abc123-cuda" / ".lab6-complete").exists()
    again = run_script(tmp_path, tmp_path / "cache", fake_python, log, TORCH="cuda")
    assert again.communicate(timeout=60)[0].count("building the environment in") == 1
    assert (tmp_path / "cache" / "venv-abc123-cuda" / ".lab6-complete").is_file()


def test_the_torch_build_is_chosen_as_documented(fake_python, tmp_path):
    """No nvidia-smi on PATH here: auto takes the CPU index when it is reachable (a file:// mirror), else the
    default build with one line saying why; TORCH=cpu without the index, or an unknown TORCH, is refused."""
    mirror = tmp_path / "mirror"
    (mirror / "torch").mkdir(parents=True)
    log = tmp_path / "pip.log"

    cpu = run_script(tmp_path, tmp_path / "c1", fake_python, log, LAB6_TORCH_CPU_INDEX=mirror.as_uri())
    assert cpu.communicate(timeout=60)[0] and cpu.returncode == 0
    assert (tmp_path / "c1" / "venv-abc123-cpu" / ".lab6-complete").is_file()
    install = next(call for call in pip_calls(log) if ".[dev]" in call)
    assert f"--extra-index-url {mirror.as_uri()}" in install

    missing = (tmp_path / "nowhere").as_uri()
    fallback = run_script(tmp_path, tmp_path / "c2", fake_python, log, LAB6_TORCH_CPU_INDEX=missing)
    output = fallback.communicate(timeout=60)[0]
    assert fallback.returncode == 0 and "cannot be reached" in output and "TORCH=cuda" in output
    assert (tmp_path / "c2" / "venv-abc123-cuda" / ".lab6-complete").is_file()

    refused = run_script(tmp_path, tmp_path / "c3", fake_python, log, TORCH="cpu", LAB6_TORCH_CPU_INDEX=missing)
    output = refused.communicate(timeout=60)[0]
    assert refused.returncode == 2 and "LAB6_TORCH_CPU_INDEX" in output
    unknown = run_script(tmp_path, tmp_path / "c4", fake_python, log, TORCH="rocm")
    output = unknown.communicate(timeout=60)[0]
    assert unknown.returncode == 2 and "TORCH=rocm" in output and "cpu or cuda" in output

"""A fault injector for the tests: runs a ``lab6`` command in a child process that is killed (SIGKILL) or signalled
at a chosen point inside a save, so the tests can check what a crash really leaves on disk.

Test code only: the package has no hooks. The child wraps the functions that write files (``torch.save``,
safetensors' ``save_file``, ``numpy.save``, PIL's ``Image.save``, ``os.replace``, ``shutil.rmtree``) and the training
loss (one call per training step) before it imports lab6, then runs ``lab6.cli.main``. At the ``nth`` call whose path
matches a glob it either dies before the call, or (``torn``) lets the write happen, cuts the file to half its
length, as a kill in the middle of the write leaves it, and dies; or it sends itself SIGTERM or SIGINT and goes on.

    python tests/faults.py '{"at": "torch.save", "path": "*/optimizer.bin", "torn": true}' -- train ...
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

POINTS = ("torch.save", "save_file", "np.save", "png", "os.replace", "rmtree", "step")


def lab6(*argv, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lab6.cli ARGV`` in a child process, one torch thread."""
    return subprocess.run([sys.executable, "-m", "lab6.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=_env(env))


def lab6_with_fault(*argv, at: str, path: str = "*", nth: int = 1, torn: bool = False, signal_name: str = "SIGKILL",
                    env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``lab6 ARGV`` in a child process that meets the fault (see the module's docstring) at the ``nth`` call of
    ``at`` on a path matching ``path``."""
    if at not in POINTS:
        raise ValueError(f"unknown fault point {at!r}: use one of {', '.join(POINTS)}")
    spec = json.dumps({"at": at, "path": path, "nth": nth, "torn": torn, "signal": signal_name})
    return subprocess.run([sys.executable, __file__, spec, "--", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=_env(env))


def _env(extra: dict | None) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(extra or {})}


def leftovers(folder: Path) -> list[str]:
    """Temporaries under ``folder`` (any depth): what a killed save leaves until the next save cleans it."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*")
                  if ".tmp" in p.name or ".old" in p.name)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, by relative path (to compare two versions of a save)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# -- the child -------------------------------------------------------------------------------------------------
def _install(spec: dict) -> None:
    import shutil

    import numpy
    import PIL.Image
    import safetensors.torch
    import torch

    import lab6.diffusion

    calls = {"n": 0}

    def fault(target, write):
        """Around one call that writes ``target``: the fault if this is the chosen call, else the call itself."""
        if target is None or not fnmatch.fnmatch(str(target), spec["path"]):
            return write()
        calls["n"] += 1
        if calls["n"] != spec["nth"]:
            return write()
        if spec["signal"] != "SIGKILL":
            os.kill(os.getpid(), getattr(signal, spec["signal"]))  # Python acts on it before the next line
            return write()
        if spec["torn"]:
            result = write()
            size = Path(target).stat().st_size
            os.truncate(target, size // 2)
            print(f"faults: killed after {size // 2} of {size} bytes of {target}", file=sys.stderr, flush=True)
        else:
            print(f"faults: killed before {spec['at']} {target}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    def path_of(f):
        if isinstance(f, (str, os.PathLike)):
            return os.fspath(f)
        if hasattr(f, "flush"):
            f.flush()
        return getattr(f, "name", None)

    at = spec["at"]
    if at == "torch.save":
        original_save = torch.save
        torch.save = lambda obj, f, *a, **k: fault(path_of(f), lambda: original_save(obj, f, *a, **k))
    elif at == "save_file":
        original_file = safetensors.torch.save_file
        safetensors.torch.save_file = lambda t, filename, *a, **k: fault(filename, lambda: original_file(t, filename,
                                                                                                         *a, **k))
    elif at == "np.save":
        original_np = numpy.save
        numpy.save = lambda file, arr, *a, **k: fault(path_of(file), lambda: original_np(file, arr, *a, **k)
                                                      or path_of(file))
    elif at == "png":
        original_png = PIL.Image.Image.save

        def save(self, fp, *a, **k):
            return fault(path_of(fp), lambda: original_png(self, fp, *a, **k))
        PIL.Image.Image.save = save
    elif at == "os.replace":
        original_replace = os.replace
        os.replace = lambda src, dst, **k: fault(dst, lambda: original_replace(src, dst, **k))
    elif at == "rmtree":
        original_rmtree = shutil.rmtree
        shutil.rmtree = lambda p, *a, **k: fault(p, lambda: original_rmtree(p, *a, **k))
    elif at == "step":  # one call of the training loss per step: the signal arrives as a step begins
        original_loss = lab6.diffusion.training_loss
        lab6.diffusion.training_loss = lambda *a, **k: fault("step", lambda: original_loss(*a, **k))


if __name__ == "__main__":
    _install(json.loads(sys.argv[1]))
    assert sys.argv[2] == "--"
    from lab6.cli import main  # imported after the patches, so `from x import f` in lab6 and its libraries sees them

    sys.exit(main(sys.argv[3:]))

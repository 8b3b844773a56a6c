"""Every notebook runs headless (nbclient, the venv's python3 kernel) in quick mode and writes its figures;
the committed notebooks carry no outputs (strip them with ``tools/strip_notebooks.py``)."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab6.figures import FIGURE_GROUPS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED_FIGURES = {
    "01_data_inspection.ipynb": FIGURE_GROUPS["data"],
    "02_train_with_accelerate.ipynb": FIGURE_GROUPS["training"],
    "03_progressive_denoising.ipynb": ("denoising_process", "samplers_comparison"),
    "04_accuracy_report.ipynb": FIGURE_GROUPS["accuracy"] + FIGURE_GROUPS["guidance"] + ("samplers_accuracy_vs_steps",),
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED_FIGURES)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_committed_notebooks_carry_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{name} holds outputs: run `python tools/strip_notebooks.py` before committing"
    assert "widgets" not in notebook.metadata
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "strip_notebooks.py"), "--check",
                             str(NOTEBOOKS / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="module")
def kernel_name() -> str:
    """The python3 kernel must be this environment's python (it has lab6, torch, ipywidgets)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def uses_this_python() -> bool:
        try:
            spec = KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            return False
        command = spec.argv[0]
        # jupyter_client runs a spec whose command is plain "python"/"python3" with its own sys.executable.
        return command in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") or \
            Path(command).resolve() == Path(sys.executable).resolve()

    if not uses_this_python():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True,
                       capture_output=True)
    assert uses_this_python(), "the python3 kernelspec does not run this environment's python"
    return "python3"


@pytest.fixture(scope="module")
def notebook_env(tiny_root, tiny_run, evaluator_file, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("notebooks")
    evaluator = evaluator_file  # untrained: accuracy is noise, but every figure is drawn
    return {**os.environ, "LAB6_QUICK": "1", "LAB6_DATA": str(tiny_root), "LAB6_MODEL": str(tiny_run / "model"),
            "LAB6_EVALUATOR": str(evaluator), "LAB6_FIGURES": str(folder / "figures"), "LAB6_RUN": str(folder / "run"),
            "LAB6_DEVICE": "cpu", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_notebook_executes_and_writes_its_figures(name, kernel_name, notebook_env, tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, kernel_name=kernel_name, timeout=600, startup_timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=notebook_env)  # raises CellExecutionError, with the cell and traceback, on any error

    figures = Path(notebook_env["LAB6_FIGURES"])
    missing = [f"{n}.{ext}" for n in EXPECTED_FIGURES[name] for ext in ("png", "pdf") if not (figures / f"{n}.{ext}").is_file()]
    assert not missing, f"{name} did not write {missing}"
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs if o.output_type in ("display_data", "execute_result"))
    if name.startswith("04"):  # the last cell shows the label picker
        assert WIDGET_VIEW in notebook.cells[-1].outputs[-1]["data"]
    if name.startswith("02"):
        run = Path(notebook_env["LAB6_RUN"])
        assert (run / "model" / "model_index.json").is_file() and (run / "checkpoints" / "step-00000015").is_dir()

"""Every notebook runs headless (nbclient, the venv's python3 kernel) in quick mode, with every check cell, and
writes its figures; its exercises' check cells accept the right answers; a student sees short cells with prose
before each idea; the committed notebooks carry no outputs (strip them with ``tools/strip_notebooks.py``).

Breaking a hand-written cell on purpose is tested in ``tests/test_notebook_checks.py``."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab6.figures import FIGURE_GROUPS
from lab6.loading import load_pipeline, save_first_stage
from lab6.samplers import make_sampler

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED_FIGURES = {
    "01_data_inspection.ipynb": FIGURE_GROUPS["data"] + ("data_item_by_hand",),
    "02_train_with_accelerate.ipynb": FIGURE_GROUPS["training"] + ("forward_process", "schedule_alpha_bar_snr",
                                                                   "training_loss_by_hand"),
    "03_progressive_denoising.ipynb": ("denoising_process", "samplers_comparison", "sampling_by_hand",
                                       "sampling_schedulers_by_hand", "refiner_by_hand", "distilled_sampler"),
    "04_accuracy_report.ipynb": FIGURE_GROUPS["accuracy"] + FIGURE_GROUPS["guidance"] + ("samplers_accuracy_vs_steps",
                                                                                        "fidelity_real_vs_generated"),
}
THREAD_COUNTS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MAX_CELL_LINES = 25
RIGHT, NOT_YET = "✓ right", "✗ not yet"

#: Each idea a notebook writes out by hand -> the cell that checks it against the package (None: run, not
#: compared, like the hand-written training loop, whose losses the notebook plots).
IDEAS = {
    "01_data_inspection.ipynb": {"item-by-hand": "item-check"},
    "02_train_with_accelerate.ipynb": {"forward-by-hand": "forward-check", "schedule-by-hand": "schedule-check",
                                       "loss-by-hand": "loss-check", "loop-by-hand": None},
    "03_progressive_denoising.ipynb": {"ddpm-step-by-hand": "ddpm-step-check", "guidance-by-hand": "guidance-check",
                                       "sampler-by-hand": "sampler-check", "refiner-by-hand": "refiner-check"},
    "04_accuracy_report.ipynb": {"topk-by-hand": "topk-check", "shapes-by-hand": "shapes-check"},
}

#: The answers to each notebook's exercises (cell id -> source): the executed notebooks get these, and each
#: exercise's check cell must then say it is right.
SOLUTIONS = {
    "01_data_inspection.ipynb": {
        "exercise-decode": "def decode_by_hand(vector):\n"
                           "    names = sorted(label_index, key=label_index.get)\n"
                           "    chosen = torch.nonzero(torch.as_tensor(vector) > 0.5).flatten().tolist()\n"
                           "    return [names[i] for i in chosen]",
        "exercise-rarest": "counts_by_label = data.labels.sum(axis=0)\n"
                           "rarest = sorted(label_index, key=label_index.get)[int(counts_by_label.argmin())]\n"
                           "rarest_count = counts_by_label.min()",
        "exercise-mean": "channel_means = (data.images / 127.5 - 1).mean(axis=(0, 2, 3)).tolist()",
    },
    "02_train_with_accelerate.ipynb": {
        "exercise-linear": "def linear_alpha_bar(T=1000, beta_start=1e-4, beta_end=0.02):\n"
                           "    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, T), dim=0)",
        "exercise-epsilon": "def epsilon_weight(snr, gamma=5.0):\n    return snr.clamp(max=gamma) / snr",
    },
    "03_progressive_denoising.ipynb": {
        "exercise-w0": "w_unconditional = 0.0",
        "exercise-epsilon": "def x0_from_epsilon(x_t, epsilon, alpha_bar_t):\n"
                            "    return (x_t - (1 - alpha_bar_t).sqrt() * epsilon) / alpha_bar_t.sqrt()",
        "exercise-deterministic": "deterministic = DDIMScheduler.from_config(config, timestep_spacing='trailing')",
    },
    "04_accuracy_report.ipynb": {
        "exercise-chance": "chance = (sum(len(c) ** 2 / 24 for c in test_conditions)\n"
                           "          / sum(len(c) for c in test_conditions))",
        "exercise-macro": "def macro_accuracy(probabilities, multi_hot):\n"
                          "    return (topk_hits(probabilities, multi_hot) / multi_hot.sum(dim=1)).mean().item()",
    },
}


def read_notebook(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def cell_text(cell) -> str:
    """What a code cell printed (its stream outputs)."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


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


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_cells_are_short_and_each_idea_has_prose_and_a_check(name):
    """What a student reads: no cell over MAX_CELL_LINES lines; prose before every hand-written idea, a check
    cell after it; two or three exercises at the end, each an answer cell and a check cell."""
    cells = read_notebook(name).cells
    for cell in cells:
        assert len(cell.source.splitlines()) <= MAX_CELL_LINES, \
            f"{name}: cell {cell.id} is longer than {MAX_CELL_LINES} lines"
    ids = [cell.id for cell in cells]
    assert sorted(cell_id for cell_id in ids if cell_id.endswith("-by-hand")) == sorted(IDEAS[name])
    for idea, check in IDEAS[name].items():
        i = ids.index(idea)
        assert cells[i - 1].cell_type == "markdown", f"{name}: no prose before {idea}"
        assert check is None or (check in ids[i + 1:i + 4] and "assert_close" in cells[ids.index(check)].source), \
            f"{name}: {idea} is not followed by its check {check}"
    exercises = [cell_id for cell_id in ids
                 if cell_id.startswith("exercise-") and not cell_id.endswith(("-check", "-intro"))]
    assert 2 <= len(exercises) <= 3 and sorted(exercises) == sorted(SOLUTIONS[name]), f"{name}: exercises {exercises}"
    first = ids.index(f"{exercises[0]}-intro")
    assert all(cell_id.startswith("exercise-") for cell_id in ids[first:]), f"{name} does not end with its exercises"
    for exercise in exercises:
        assert ids[ids.index(exercise) + 1] == f"{exercise}-check"


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
def notebook_env(tiny_root, tiny_refined_model, evaluator_file, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("notebooks")
    evaluator = evaluator_file  # untrained: accuracy is noise, but every figure is drawn
    # The kernel runs at torch's default thread count, as a student's does: `make test` gives its own workers
    # one thread each, and a check that held on one thread only would pass here and fail on "Run All".
    inherited = {k: v for k, v in os.environ.items() if k not in THREAD_COUNTS}
    # A two-stage model, as the shipped one: the notebooks' refiner cells run and are checked; and, as the shipped
    # one, with a few-step first stage inside (its own weights here: the cells' shape is tested, not the drawing).
    model = folder / "model"
    shutil.copytree(tiny_refined_model, model)
    pair = load_pipeline(model)
    few_step = pair.replaced(scheduler=make_sampler("ddim", pair.scheduler.config), guidance_scale=1.0)
    distilled = {"kind": "progressive", "from": str(model), "steps": 2, "teacher_steps": 4, "calls_per_step": 1}
    save_first_stage(few_step, model / "few-step", {**pair.metadata, "distilled": distilled}, stages_of=model)
    return {**inherited, "LAB6_QUICK": "1", "LAB6_DATA": str(tiny_root), "LAB6_MODEL": str(model),
            "LAB6_EVALUATOR": str(evaluator), "LAB6_FIGURES": str(folder / "figures"), "LAB6_RUN": str(folder / "run"),
            "LAB6_DEVICE": "cpu", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def execute(notebook, kernel_name: str, env: dict, folder: Path, answers: dict | None = None) -> list:
    """Run every cell of ``notebook`` in a fresh kernel (raising CellExecutionError, with the cell and its
    traceback, on any error); then, in the same kernel, each exercise's answer from ``answers`` followed by a
    copy of its check cell. Returns those copies (exercise id -> cell, with its outputs)."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, kernel_name=kernel_name, timeout=600, startup_timeout=300,
                            resources={"metadata": {"path": str(folder)}})
    answered, committed = {}, len(notebook.cells)
    with client.setup_kernel(env=env):
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        for cell_id, source in (answers or {}).items():
            check = next(cell for cell in notebook.cells[:committed] if cell.id == f"{cell_id}-check")
            for extra in (nbformat.v4.new_code_cell(source), nbformat.v4.new_code_cell(check.source)):
                notebook.cells.append(extra)  # the client writes each executed cell back into the notebook
                client.execute_cell(extra, len(notebook.cells) - 1)
            answered[cell_id] = notebook.cells[-1]
    del notebook.cells[committed:]
    return answered


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_notebook_executes_and_writes_its_figures(name, kernel_name, notebook_env, tmp_path):
    notebook = read_notebook(name)
    answered = execute(notebook, kernel_name, notebook_env, tmp_path, SOLUTIONS[name])

    figures = Path(notebook_env["LAB6_FIGURES"])
    missing = [f"{n}.{ext}" for n in EXPECTED_FIGURES[name] for ext in ("png", "pdf")
               if not (figures / f"{n}.{ext}").is_file()]
    assert not missing, f"{name} did not write {missing}"
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    assert any("image/png" in o.get("data", {}) for o in shown)
    checks = [cell for cell in notebook.cells if cell.id.startswith("exercise-") and cell.id.endswith("-check")]
    assert sorted(cell.id for cell in checks) == sorted(f"{e}-check" for e in answered)
    for cell in checks:  # as committed (unanswered), then after the right answer
        after_answer = answered[cell.id.removesuffix("-check")]
        assert NOT_YET in cell_text(cell), f"{name}: {cell.id} accepted the unanswered exercise: {cell_text(cell)!r}"
        assert RIGHT in cell_text(after_answer), \
            f"{name}: {cell.id} did not accept the right answer: {cell_text(after_answer)!r}"
    if name.startswith("04"):  # the label picker
        picker = next(cell for cell in notebook.cells if cell.id == "picker")
        assert WIDGET_VIEW in picker.outputs[-1]["data"]
    default_threads = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                     env=notebook_env, capture_output=True, text=True, check=True).stdout.strip()
    assert f"device cpu ({default_threads} threads)" in cell_text(notebook.cells[1]), "the checks ran on another count"
    if name.startswith("02"):
        run = Path(notebook_env["LAB6_RUN"])
        assert (run / "model" / "model_index.json").is_file() and (run / "checkpoints" / "step-00000015").is_dir()
        launched = next(cell for cell in notebook.cells if cell.id == "loop-run")
        assert "step   29" in cell_text(launched), "the hand-written loop did not run its 30 steps"


def test_network_tolerance_follows_the_arithmetic():
    """Half the digits of each precision; float32 on a GPU that allows TF32 has TF32's 10-bit mantissa."""
    import torch

    from lab6.settings import network_tolerance

    assert network_tolerance(torch.float32, "cpu") == {"rtol": 2.0 ** -11.5, "atol": 2.0 ** -11.5}
    assert network_tolerance(torch.bfloat16, "cpu")["atol"] == 2.0 ** -3.5
    allowed = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        assert network_tolerance(torch.float32, "cuda:0")["rtol"] == 2.0 ** -5
        assert network_tolerance(torch.float16, "cuda")["rtol"] == 2.0 ** -5
    finally:
        torch.backends.cudnn.allow_tf32 = allowed


def test_guidance_two_calls_against_one_batch_agree_within_the_network_tolerance():
    """The check notebook 03 makes, on the shipped model at two threads: the two calls of `guided` and the one
    batch of `guided_output` sum in another order, so they differ in the last digits (2e-5 on this project's
    CPUs, twice the 1e-5 that assert_close allows float32 by default), well inside `network_tolerance`."""
    import torch

    from lab6.loading import load_pipeline
    from lab6.pipeline import conditions_tensor, guided_output
    from lab6.settings import network_tolerance

    unet = load_pipeline(None).unet
    size = unet.config.sample_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    condition, t = conditions_tensor([["red sphere", "cyan cylinder", "cyan cube"]]), torch.tensor(500)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            cond, uncond = unet(x, t.expand(1), condition), unet(x, t.expand(1), torch.zeros_like(condition))
            batched = guided_output(unet, x, t, condition, 3.0)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(uncond + 3.0 * (cond - uncond), batched, **network_tolerance(unet.dtype, unet.device))

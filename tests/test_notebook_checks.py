"""The notebooks' check cells can fail: a hand-written cell broken on purpose stops its notebook at the cell
that compares it with the package, with an AssertionError (``torch.testing.assert_close``). Also: the ``gpu64``
preset that notebook 02 trains on a GPU builds and trains on the CPU."""

import pytest
import test_notebooks
from test_notebooks import execute, read_notebook

# The notebook tests' fixtures, shared by name (pytest finds a fixture among a module's attributes).
kernel_name = test_notebooks.kernel_name
notebook_env = test_notebooks.notebook_env

#: (notebook, hand-written cell, text in it, what replaces it, the check cell that must then fail)
BREAKAGES = [
    ("01_data_inspection.ipynb", "item-by-hand", "/ 127.5 - 1", "/ 255", "item-check"),  # pixels in [0, 1]
    ("02_train_with_accelerate.ipynb", "loss-by-hand", "/ (snr_t + 1)", "/ snr_t", "loss-check"),  # the epsilon weight
    ("02_train_with_accelerate.ipynb", "forward-by-hand", "(1 - a).sqrt() * noise", "(1 - a) * noise",
     "forward-check"),
    ("03_progressive_denoising.ipynb", "ddpm-step-by-hand", "(beta * (1 - a_prev) / (1 - a_t)).clamp", "beta.clamp",
     "ddpm-step-check"),  # beta instead of the posterior's beta-tilde
    # no guidance
    ("03_progressive_denoising.ipynb", "sampler-by-hand", "condition, w)", "condition, 1.0)", "sampler-check"),
    ("03_progressive_denoising.ipynb", "refiner-by-hand", "num_train_timesteps) - 1", "num_train_timesteps)",
     "refiner-check"),  # from one timestep noisier
    # the k least probable
    ("04_accuracy_report.ipynb", "topk-by-hand", "p.topk(k)", "p.topk(k, largest=False)", "topk-check"),
    ("04_accuracy_report.ipynb", "shapes-by-hand", "found = found * multi_hot", "found = found + 0 * multi_hot",
     "shapes-check"),  # wrong guesses counted as found
]


@pytest.mark.slow
@pytest.mark.parametrize("name, cell_id, text, replacement, check_id", BREAKAGES,
                         ids=[f"{b[0][:2]}-{b[1]}" for b in BREAKAGES])
def test_a_broken_hand_written_cell_fails_its_check(name, cell_id, text, replacement, check_id, kernel_name,
                                                    notebook_env, tmp_path):
    from nbclient.exceptions import CellExecutionError

    notebook = read_notebook(name)
    ids = [cell.id for cell in notebook.cells]
    broken = notebook.cells[ids.index(cell_id)]
    assert broken.source.count(text) == 1, f"{cell_id} no longer holds {text!r} once: update this test"
    broken.source = broken.source.replace(text, replacement)
    notebook.cells = notebook.cells[:ids.index(check_id) + 1]  # up to the check: nothing after it matters here
    with pytest.raises(CellExecutionError) as failure:
        execute(notebook, kernel_name, notebook_env, tmp_path)
    assert failure.value.ename == "AssertionError", failure.value
    failed = [cell.id for cell in notebook.cells if any(o.output_type == "error" for o in cell.get("outputs", []))]
    assert failed == [check_id], f"expected only {check_id} to fail, got {failed}"


@pytest.mark.slow
def test_gpu64_preset_builds_and_trains_two_steps_on_the_cpu(tiny_root, tmp_path):
    """No GPU here: the recipe's model (native 64x64, ~38.9M parameters, cross-attention tokens) must still build,
    take optimiser steps with finite losses, and export a model folder that loads back at 64x64."""
    import csv

    from lab6.figures.training import parameter_count
    from lab6.loading import load_pipeline
    from lab6.presets import preset
    from lab6.train import train

    recipe = preset("gpu64", steps=2, batch_size=2, log_every=1, eval_splits=())
    assert (recipe.image_size, recipe.patch_size, recipe.conditioning, recipe.prediction, recipe.beta_schedule) == \
        (64, 1, "cross_attention", "v", "cosine") and recipe.min_snr_gamma == 5.0
    assert parameter_count("gpu64") / 1e6 == pytest.approx(38.9, abs=0.05)
    model_dir = train(recipe, tiny_root, tmp_path / "run", progress=False)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)
    pipe = load_pipeline(model_dir)
    assert pipe.unet.config.sample_size == 64 and pipe.unet.config.conditioning == "cross_attention"

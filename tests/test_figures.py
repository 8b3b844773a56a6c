"""``lab6 figures`` writes every figure of the notebooks; the notebook settings; the notebook stripper."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab6.cli import main
from lab6.figures import FIGURE_GROUPS, figure_files
from lab6.sampling import Sampling
from lab6.settings import notebook_settings

ROOT = Path(__file__).resolve().parents[1]




def test_settings_come_from_the_environment(tiny_root, tmp_path):
    env = {"LAB6_DATA": str(tiny_root), "LAB6_MODEL": str(tmp_path / "m"), "LAB6_QUICK": "1",
           "LAB6_FIGURES": str(tmp_path / "f"), "LAB6_DEVICE": "cpu"}
    quick = notebook_settings(env)
    assert quick.quick and quick.data_root == tiny_root and quick.model == tmp_path / "m"
    assert quick.figures == tmp_path / "f" and quick.preset == "tiny" and quick.sampling.steps <= 4
    assert max(steps for _, steps in quick.sampler_specs) <= 10 and len(quick.guidance_scales) <= 3
    full = notebook_settings({**env, "LAB6_QUICK": "0"}, sampling=Sampling(steps=7))
    assert not full.quick and full.preset == "cpu" and full.sampling.steps == 7
    assert dict(full.sampler_specs) == {"ddpm": 1000, "ddim": 50, "dpmsolver": 20}
    assert str(tiny_root) in full.describe()


def test_every_figure_is_written_as_png_and_pdf(tiny_root, tiny_run, evaluator_file, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["figures", "--data-root", str(tiny_root), "--model", str(tiny_run),
                 "--evaluator", str(evaluator_file), "--out", str(out), "--quick", "--quiet"]) == 0
    expected = figure_files(out, ["all"])
    assert len(expected) == 2 * sum(len(names) for names in FIGURE_GROUPS.values())
    missing = [p.name for p in expected if not p.is_file() or p.stat().st_size == 0]
    assert not missing, missing
    assert (out / "data_samples.pdf").read_bytes().startswith(b"%PDF")
    assert "figures (PNG + PDF) written" in capsys.readouterr().out


def test_one_group_without_a_model(tiny_root, tmp_path):
    out = tmp_path / "data-only"
    assert main(["figures", "--data-root", str(tiny_root), "--out", str(out), "--which", "data", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in figure_files(out, ["data"]))


def test_figures_needs_a_model_for_images(tiny_root, tmp_path, capsys):
    assert main(["figures", "--data-root", str(tiny_root), "--model", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "x"), "--which", "denoising"]) == 2
    assert "neither a model folder" in capsys.readouterr().err


def test_strip_notebooks_removes_outputs(tmp_path):
    notebook = {"cells": [{"cell_type": "code", "execution_count": 3, "id": "a", "metadata": {"scrolled": True},
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}], "source": "1"},
                          {"cell_type": "markdown", "id": "b", "metadata": {}, "source": "# t"}],
                "metadata": {"widgets": {"state": {}}, "language_info": {"name": "python", "version": "3.11.7"}},
                "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(notebook))
    tool = [sys.executable, str(ROOT / "tools" / "strip_notebooks.py")]
    assert subprocess.run([*tool, "--check", str(path)], capture_output=True).returncode == 1
    assert subprocess.run([*tool, str(path)], capture_output=True).returncode == 1  # changed: a hook fails once
    assert subprocess.run([*tool, "--check", str(path)], capture_output=True).returncode == 0
    stripped = json.loads(path.read_text())
    assert stripped["cells"][0]["outputs"] == [] and stripped["cells"][0]["execution_count"] is None
    assert stripped["cells"][0]["id"] == "a" and "widgets" not in stripped["metadata"]
    assert stripped["metadata"]["language_info"] == {"name": "python"}


def test_without_a_model_the_notebooks_train_a_quick_one_once(tiny_root, tmp_path):
    from lab6.settings import notebook_model

    settings = notebook_settings({"LAB6_DATA": str(tiny_root), "LAB6_QUICK": "1", "LAB6_DEVICE": "cpu",
                                  "LAB6_RUN": str(tmp_path / "run"), "LAB6_FIGURES": str(tmp_path / "f")})
    settings.model = None  # as when no model ships with the package
    messages = []
    loaded = notebook_model(settings, log=messages.append)
    assert "training a quick model" in messages[0] and loaded.unet.config.sample_size == 16
    assert settings.model == tmp_path / "run-fallback" and (tmp_path / "run-fallback" / "model").is_dir()
    settings.model = None
    notebook_model(settings, log=messages.append)  # the second time it reuses that run
    assert "using the quick model trained earlier" in messages[1]


def test_accuracy_against_minutes_compares_runs(tmp_path):
    from lab6.figures import accuracy_vs_minutes

    for name, accuracies in (("a", (0.2, 0.5)), ("b", (0.1, 0.3))):
        run = tmp_path / name
        run.mkdir()
        rows = ["step,elapsed_min,split,accuracy,sampler,steps,guidance"]
        for step, accuracy in zip((100, 200), accuracies):
            rows += [f"{step},{step / 10},{split},{accuracy},dpmsolver,20,2.0" for split in ("test", "new_test")]
        (run / "eval.csv").write_text("\n".join(rows) + "\n")
    fig = accuracy_vs_minutes([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[0].get_xdata()) == [10.0, 20.0] and list(lines[0].get_ydata()) == [0.2, 0.5]
    assert (tmp_path / "out" / "runs_accuracy_vs_minutes.png").is_file()


def test_accuracy_against_minutes_averages_only_the_asked_splits(tmp_path):
    from lab6.figures import accuracy_vs_minutes

    run = tmp_path / "fine"
    run.mkdir()
    (run / "train_config.json").write_text('{"init_from": "lab6/assets/model"}')
    (run / "eval.csv").write_text("step,elapsed_min,split,accuracy,sampler,steps,guidance\n"
                                  "100,5,test,0.2,dpmsolver,20,2\n100,5,new_test,0.4,dpmsolver,20,2\n"
                                  "100,5,heldout,0.9,dpmsolver,20,2\n200,9,test,0.5,dpmsolver,20,2\n")
    line, = accuracy_vs_minutes([run], tmp_path / "out").axes[0].get_lines()
    # step 200 lacks new_test, so only step 100 counts; heldout is not averaged in
    assert list(line.get_xdata()) == [5.0] and list(line.get_ydata()) == pytest.approx([0.3])
    assert line.get_label() == "fine (fine-tuned from model)"
    with pytest.warns(UserWarning, match="fine is not drawn: none of its evaluations scored all of test, ghost"):
        assert accuracy_vs_minutes([run], tmp_path / "out", splits=("test", "ghost")).axes[0].get_lines() == []


def test_a_fine_tune_starts_where_its_starting_models_whole_training_ended(tmp_path):
    from lab6.figures import accuracy_vs_minutes

    run = tmp_path / "second-fine-tune"
    run.mkdir()
    (run / "train_config.json").write_text('{"init_from": "lab6/assets/model"}')
    # the starting model was itself fine-tuned: 120 minutes on top of 125 from scratch
    (run / "parent_lab6.json").write_text('{"train_minutes": 120.0, "parent": {"train_minutes": 125.0}}')
    (run / "eval.csv").write_text("step,elapsed_min,split,accuracy,sampler,steps,guidance\n"
                                  "100,5,test,0.8,dpmsolver,20,2\n100,5,new_test,0.6,dpmsolver,20,2\n")
    line, = accuracy_vs_minutes([run], tmp_path / "out").axes[0].get_lines()
    assert list(line.get_xdata()) == [250.0] and list(line.get_ydata()) == pytest.approx([0.7])
    assert line.get_label() == "second-fine-tune (fine-tuned from model after 245 min)"

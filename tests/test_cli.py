import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

from lab6.cli import main

ROOT = Path(__file__).resolve().parents[1]




def test_every_verb_has_help_in_plain_text(capsys):
    for verb in ([], ["train"], ["sample"], ["pair"], ["evaluate"], ["evaluator-train"], ["report"], ["figures"],
                 ["distill"], ["data", "render"], ["data", "priors"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*verb, "--help"])
        assert exit_info.value.code == 0
        printed = capsys.readouterr().out
        assert printed.startswith(" ".join(["usage: lab6", *verb]))
        assert "``" not in printed, f"lab6 {' '.join(verb)} --help shows reStructuredText markup"


def test_every_option_of_every_verb_says_what_it_does():
    """--help is the first manual: an option listed without a line of help leaves a user guessing."""
    import argparse

    from lab6.cli import build_parser

    def parsers(parser, name):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for verb, sub in action.choices.items():
                    yield from parsers(sub, f"{name} {verb}")

    silent = [f"{name} {action.option_strings[0]}" for name, parser in parsers(build_parser(), "lab6")
              for action in parser._actions
              if action.option_strings and action.help in (None, "") and action.dest != "help"]
    assert silent == [], f"options without help: {silent}"


def test_sample_writes_pngs_and_grid(tiny_run, tiny_root, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out", str(out),
                 "--sampler", "ddim", "--steps", "3"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["0.png", "1.png", "2.png", "3.png", "4.png", "5.png", "conditions.json", "grid.png"]
    assert Image.open(out / "0.png").size == (64, 64)


def test_evaluate_prints_and_writes_json(tiny_run, tiny_root, tmp_path, evaluator_file, capsys):
    images = tmp_path / "images"
    main(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out", str(images),
          "--steps", "2"])
    assert main(["evaluate", "--images", str(images), "--conditions", str(tiny_root / "test.json"),
                 "--evaluator", str(evaluator_file)]) == 0
    assert "official accuracy" in capsys.readouterr().out  # named after checkpoint.pth
    result = json.loads((images / "accuracy.json").read_text())
    assert list(result["accuracy"]) == ["official"] and 0 <= result["accuracy"]["official"] <= 1
    assert len(result["per_image"]) == 6 and set(result["per_image"][0]["hits"]) == {"official"}


def test_evaluate_dataset_scores_the_roots_own_images(tiny_root, tmp_path, evaluator_file, capsys):
    from lab6.data import ICLEVRDataset
    from lab6.evaluator import Evaluator, topk_accuracy
    from lab6.proxy import upsample_like_official

    out = tmp_path / "transfer.json"
    assert main(["evaluate", "--dataset", str(tiny_root), "--limit", "5", "--evaluator", str(evaluator_file),
                 "--out", str(out)]) == 0
    assert "5 images" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["dataset"] == str(tiny_root) and len(result["per_image"]) == 5
    # the same five images, scored by hand
    dataset = ICLEVRDataset(tiny_root, image_size=32, progress=False)
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:5]
    images, labels = dataset.batch(chosen)
    probabilities = Evaluator.load(evaluator_file).probabilities(upsample_like_official(images, 32))
    assert result["accuracy"]["official"] == pytest.approx(topk_accuracy(probabilities, labels))


@pytest.mark.parametrize("args, message", [
    (["--dataset", "D", "--images", "I"], "not both"),
    (["--images", "I"], "give --images DIR and --conditions FILE"),
    (["--images", "I", "--conditions", "C", "--limit", "3"], "--limit only applies to --dataset"),
])
def test_evaluate_refuses_mixed_inputs(args, message, capsys):
    assert main(["evaluate", *args]) == 2
    assert message in capsys.readouterr().err


def test_report_writes_the_contract_files(tiny_run, tiny_root, tmp_path, evaluator_file):
    out = tmp_path / "report"
    assert main(["report", "--data-root", str(tiny_root), "--model", str(tiny_run), "--evaluator",
                 str(evaluator_file), "--out", str(out), "--steps", "4"]) == 0
    for name in ("test_grid_first_stage.png", "new_test_grid_first_stage.png", "denoising.png", "accuracy.json",
                 "summary.md", "images/first_stage/test/0.png", "images/first_stage/test/5.png",
                 "images/first_stage/new_test/1.png"):
        assert (out / name).is_file(), name
    assert not (out / "images" / "refined").exists() and not (out / "test_grid_refined.png").exists()  # one stage
    summary = (out / "summary.md").read_text()
    assert summary.startswith("**Submit `images/first_stage/<split>/`") and "synthetic" not in summary
    drawn = json.loads((out / "images" / "first_stage" / "test" / "conditions.json").read_text())
    assert drawn == json.loads((tiny_root / "test.json").read_text())
    report = json.loads((out / "accuracy.json").read_text())
    assert set(report["splits"]) == {"test", "new_test"}
    assert report["settings"]["steps"] == 4 and "official" in report["splits"]["test"]["accuracy"]
    shares = report["splits"]["test"]["found_by_shape"]["official"]
    assert set(shares) <= {"cube", "sphere", "cylinder"} and all(0 <= v <= 1 for v in shares.values())
    grid = Image.open(out / "test_grid_first_stage.png")
    assert grid.size == (6 * 66 + 2, 66 + 2)  # up to 8 per row: the 6 images fit one row; no title


def test_evaluate_and_report_score_with_two_architectures(tiny_run, tiny_root, tmp_path, evaluator_file,
                                                          second_evaluator_file, capsys):
    images = tmp_path / "images"
    main(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out", str(images),
          "--steps", "2"])
    assert main(["evaluate", "--images", str(images), "--conditions", str(tiny_root / "test.json"),
                 "--evaluator", str(evaluator_file), "--evaluator", str(second_evaluator_file)]) == 0
    printed = capsys.readouterr().out
    assert "official accuracy" in printed and "efficientnet_b0 accuracy" in printed
    result = json.loads((images / "accuracy.json").read_text())
    assert list(result["accuracy"]) == ["official", "efficientnet_b0"]
    assert set(result["per_image"][0]["hits"]) == {"official", "efficientnet_b0"}

    out = tmp_path / "report"
    assert main(["report", "--data-root", str(tiny_root), "--model", str(tiny_run), "--evaluator", str(evaluator_file),
                 "--evaluator", str(second_evaluator_file), "--out", str(out), "--steps", "2"]) == 0
    report = json.loads((out / "accuracy.json").read_text())
    assert set(report["splits"]["new_test"]["accuracy"]) == {"official", "efficientnet_b0"}
    header = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| split"))
    assert "accuracy (official)" in header and "accuracy (efficientnet_b0)" in header


def test_bad_conditions_give_a_clear_error(tiny_run, tmp_path, capsys):
    conditions = tmp_path / "bad.json"
    conditions.write_text(json.dumps([["red cube"], ["purple cone"]]))
    assert main(["sample", "--model", str(tiny_run), "--conditions", str(conditions), "--out",
                 str(tmp_path / "x")]) == 2
    assert "condition 1: unknown label 'purple cone'" in capsys.readouterr().err


def test_a_warning_is_one_line_once_and_debug_keeps_pythons_form(tiny_run, tmp_path, capsys):
    conditions = tmp_path / "four.json"
    conditions.write_text(json.dumps([["red cube", "blue cube", "gray cube", "green cube"]]))
    args = ["sample", "--model", str(tiny_run), "--conditions", str(conditions), "--out", str(tmp_path / "x"),
            "--sampler", "ddim", "--steps", "2"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("lab6 sample: warning: 4 objects in") == 1 and "UserWarning" not in err
    with pytest.warns(UserWarning, match="4 objects in"):  # --debug: Python's own warnings, as the traceback
        assert main(args + ["--debug"]) == 0


@pytest.mark.parametrize("args, usage, message", [
    (["sample", "--conditions", "c.json", "--out", "x", "--stpes", "3"], "usage: lab6 sample",
     "lab6 sample: error: unrecognized arguments: --stpes 3 (did you mean --steps?)"),
    (["data", "render", "--out", "x", "--workerz", "2"], "usage: lab6 data render",
     "lab6 data render: error: unrecognized arguments: --workerz 2 (did you mean --workers?)"),
    (["report", "--out", "x", "stray"], "usage: lab6 report", "lab6 report: error: unrecognized arguments: stray\n")])
def test_an_unknown_argument_is_refused_by_its_verb_with_the_nearest_option(args, usage, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.startswith(usage) and message in err


def test_missing_model_is_named(tmp_path, tiny_root, capsys):
    assert main(["sample", "--model", str(tmp_path / "nothing"), "--conditions", str(tiny_root / "test.json"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "neither a model folder" in capsys.readouterr().err


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    text = (ROOT / "environment.yml").read_text()
    pip_section = {line.strip()[2:].strip().strip('"') for line in text.splitlines()
                   if line.startswith("      - ")}
    assert wanted <= pip_section, sorted(wanted - pip_section)
    assert "python=3.11" in text


def test_uint8_round_trip_of_saved_images(tmp_path):
    from lab6.images import load_images, save_images

    images = torch.rand(3, 3, 64, 64) * 2 - 1
    save_images(images, tmp_path, grid_name=None)
    back = load_images(tmp_path, 3)
    assert torch.allclose(back, images, atol=1 / 127.5)
    assert np.asarray(Image.open(tmp_path / "2.png")).shape == (64, 64, 3)


def test_a_report_of_a_refined_model_scores_its_first_stage_too(tiny_refined_model, tiny_root, tmp_path,
                                                                evaluator_file):
    out = tmp_path / "report"
    assert main(["report", "--data-root", str(tiny_root), "--model", str(tiny_refined_model), "--evaluator",
                 str(evaluator_file), "--steps", "4", "--out", str(out)]) == 0
    report = json.loads((out / "accuracy.json").read_text())
    assert report["settings"]["refined"] is True
    assert set(report["splits"]["test"]["accuracy_first_stage"]) == set(report["splits"]["test"]["accuracy"])
    for stage in ("first_stage", "refined"):  # both written, named by stage
        assert (out / f"test_grid_{stage}.png").is_file() and (out / "images" / stage / "new_test" / "1.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "first stage alone (official)" in summary
    assert summary.splitlines()[0].startswith("**Submit `images/first_stage/<split>/`")
    plain = tmp_path / "plain"
    assert main(["report", "--data-root", str(tiny_root), "--model", str(tiny_refined_model), "--evaluator",
                 str(evaluator_file), "--steps", "4", "--out", str(plain), "--no-refine"]) == 0
    unrefined = json.loads((plain / "accuracy.json").read_text())
    assert unrefined["settings"]["refined"] is False and "accuracy_first_stage" not in unrefined["splits"]["test"]
    assert unrefined["splits"]["test"]["accuracy"] == report["splits"]["test"]["accuracy_first_stage"]
    assert not (plain / "images" / "refined").exists()
    first, again = (Image.open(folder / "images" / "first_stage" / "test" / "2.png") for folder in (out, plain))
    assert np.array_equal(np.asarray(first), np.asarray(again))  # the first stage is the same draw either way


def test_a_report_on_the_synthetic_conditions_says_so_everywhere(tiny_run, tmp_path, evaluator_file, capsys):
    """`make demo` without course data: the log, the file names, the grids' titles and the summary's first
    line say these are lab6's synthetic conditions, and how to draw the course's."""
    out = tmp_path / "demo"
    assert main(["report", "--model", str(tiny_run), "--evaluator", str(evaluator_file), "--steps", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "drawing the built-in synthetic conditions" in printed and "make demo DATA=COURSE_DATA" in printed
    assert printed.rstrip().splitlines()[-1].startswith("these are the built-in synthetic conditions (test, new_test)")
    assert not list(out.glob("test_grid*")) and (out / "synthetic_test_grid_first_stage.png").is_file()
    summary = (out / "summary.md").read_text()
    assert summary.startswith("**Not for submission") and "--data-root COURSE_DATA" in summary.splitlines()[0]
    count = len(json.loads((out / "images" / "first_stage" / "test" / "conditions.json").read_text()))
    titled = Image.open(out / "synthetic_test_grid_first_stage.png")
    rows = -(-count // 8)
    assert titled.size == (min(count, 8) * 66 + 2, 16 + rows * 66 + 2)  # a 16-px title above the rows
    assert np.asarray(titled)[:16].min() < 100  # text drawn in it


def test_evaluate_warns_when_images_were_drawn_for_other_conditions(tiny_run, tiny_root, tmp_path, evaluator_file,
                                                                   capsys):
    images = tmp_path / "images"
    assert main(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out",
                 str(images), "--steps", "2"]) == 0
    assert json.loads((images / "conditions.json").read_text()) == json.loads((tiny_root / "test.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--images", str(images), "--conditions", str(tiny_root / "test.json"),
                 "--evaluator", str(evaluator_file)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["evaluate", "--images", str(images), "--conditions", str(tiny_root / "new_test.json"),
                 "--evaluator", str(evaluator_file)]) == 0
    err = capsys.readouterr().err
    assert "lab6 evaluate: warning: the images in" in err and "drawn for other conditions than" in err
    assert "new_test.json" in err and "the first difference is image 0" in err


def test_pair_makes_a_two_stage_model_folder_that_samples_at_64_px(tiny_run, tiny_refined_model, tiny_root, tmp_path,
                                                                    capsys):
    from lab6.loading import load_pipeline, save_pipeline
    from lab6.pipeline import Lab6Pipeline

    refiner = load_pipeline(tiny_refined_model)
    alone = tmp_path / "refiner"
    save_pipeline(Lab6Pipeline(refiner.refiner, refiner.refiner_scheduler), alone, {"recipe": {"max_timestep": 300}})
    assert main(["pair", "--model", str(tiny_run), "--refiner", str(alone), "--strength", "0.25",
                 "--out", str(tmp_path / "pair")]) == 0
    paired = load_pipeline(tmp_path / "pair")
    assert paired.config.refiner_strength == 0.25 and paired.metadata["refiner"] == {"recipe": {"max_timestep": 300}}
    assert paired.config.refiner_spacing == "karras"
    assert main(["pair", "--model", str(tiny_run), "--refiner", str(alone), "--spacing", "uniform",
                 "--out", str(tmp_path / "uniform")]) == 0
    assert load_pipeline(tmp_path / "uniform").config.refiner_spacing == "uniform"
    assert main(["sample", "--model", str(tmp_path / "pair"), "--conditions", str(tiny_root / "test.json"),
                 "--steps", "4", "--out", str(tmp_path / "images")]) == 0
    assert (tmp_path / "images" / "grid.png").is_file()
    assert main(["pair", "--model", str(tiny_run), "--refiner", str(alone), "--strength", "0.5",
                 "--out", str(tmp_path / "too_far")]) == 2
    refused = "refiner strength must be in (0, 0.3] (the refiner was trained on t < 300), got 0.5"
    assert refused in capsys.readouterr().err


def test_data_priors_prints_the_detail_priors_of_a_data_roots_images(tiny_root, capsys):
    from lab6.data import ICLEVRDataset
    from lab6.refiner import detail_priors

    assert main(["data", "priors", "--data-root", str(tiny_root)]) == 0
    out = capsys.readouterr().out
    dataset = ICLEVRDataset(tiny_root, image_size=64, progress=False)
    images, _ = dataset.batch(torch.arange(len(dataset)))
    grey, colour = detail_priors(images)
    assert f"detail_prior {grey:.3g}, detail_chroma_prior {colour:.3g}" in out
    assert f"--set detail_prior={grey:.3g} --set detail_chroma_prior={colour:.3g}" in out
    with pytest.raises(SystemExit):  # refused before any image is read
        main(["data", "priors", "--data-root", str(tiny_root), "--patch", "1"])
    assert "--patch: must be 2 or more (a one-pixel patch holds no detail), got 1" in capsys.readouterr().err

"""bench_fidelity's pieces on tiny inputs: its rows parse in both forms, its tables put a cell under every heading
(the two-sample test first, as the model card shows it), and the two-sample entries pool every seed's folds."""

import argparse
import json

import pytest
import torch

from bench import bench_fidelity as bench
from bench import harness
from bench.measures import two_sample_accuracy
from tests.test_bench_measures import QUICK, blurred, scenes

SCORES = {"resnet18": {"frechet": 102.7, "accuracy": 0.885, "accuracy_32": 0.961,
                       "shapes": {"cube": 0.581, "sphere": 0.994, "cylinder": 0.916}},
          "regnet": {"frechet": 68.5, "accuracy": 0.968, "accuracy_32": 0.960,
                     "shapes": {"cube": 0.969, "sphere": 0.989}}}  # no cylinder among these images: no share
ROW = {"label": "a model", "c2st": 0.9375, "c2st_se": 0.0125, "c2st_log_loss": 0.2468, "edge": 1.7712,
       "sharpness": 1.25, "grid": 31.7, "colour_grain": 4.6, "cast": 0.93, "cast_p90": 1.45, "cast_over_8": 0.0,
       "seconds": 19.9, "scores": SCORES}


def cells(header: str, line: str) -> dict[str, str]:
    assert header.count("|") == line.count("|")
    return dict(zip(*([c.strip() for c in text.strip("|").split("|")] for text in (header, line))))


def test_a_row_names_its_model_first_or_as_a_key():
    read = bench.ROW_KEYS
    assert harness.parse_row("cpu64=runs/cpu64:sampler=dpmsolver,steps=20", read, head="model") == (
        "cpu64", {"model": "runs/cpu64", "sampler": "dpmsolver", "steps": 20})
    assert harness.parse_row("weaker=strength=0.1,refine=false", read, head="model") == (
        "weaker", {"strength": 0.1, "refine": False})
    with pytest.raises(argparse.ArgumentTypeError, match="bad value 'blue' for noise"):
        harness.parse_row("x=lab6/assets/model:noise=blue", read, head="model")


def test_the_main_table_puts_the_two_sample_test_first_and_a_cell_under_every_heading():
    header, rule, line = bench.main_table([ROW], ["resnet18", "regnet"])
    assert rule.count("|") == header.count("|")
    assert cells(header, line) == {
        "images": "a model", "two-sample test (0.5 = real)": "0.938 ± 0.013", "its log-loss (real: >= 0.69)": "0.247",
        "edge acutance": "1.771", "Frechet (resnet18)": "102.7", "Frechet (regnet)": "68.5",
        "sharpness / real": "1.25", "2x2 grid / real": "31.7", "colour grain / real": "4.6", "cast mean": "0.93",
        "cast p90": "1.45", "cast > 8": "0.0%", "accuracy (resnet18)": "0.885", "accuracy (regnet)": "0.968",
        "s / 32 images": "19.9"}
    without_test = {k: v for k, v in ROW.items() if not k.startswith("c2st")} | {"seconds": None}
    header, _, line = bench.main_table([without_test], ["resnet18"])
    assert header.startswith("| images | edge acutance |") and cells(header, line)["s / 32 images"] == ""


def test_the_round_trip_and_shape_tables():
    blurred_row = {**ROW, "label": "a 32-px model", "scores": {n: {k: v for k, v in s.items() if k != "accuracy_32"}
                                                               for n, s in SCORES.items()}}
    lines = bench.round_trip_table([ROW, blurred_row], ["resnet18", "regnet"])
    assert len(lines) == 3  # images already through 32 px get no second round trip
    assert list(cells(lines[0], lines[2]).values()) == ["a model", "0.885", "0.961", "+7.6 pt", "0.968", "0.960",
                                                        "-0.8 pt"]
    header, _, line = bench.shape_table([ROW], ["resnet18", "regnet"])
    assert cells(header, line) == {"images": "a model", "cube (resnet18)": "0.581", "sphere (resnet18)": "0.994",
                                   "cylinder (resnet18)": "0.916", "cube (regnet)": "0.969",
                                   "sphere (regnet)": "0.989", "cylinder (regnet)": ""}


def test_the_tables_are_named_for_the_model_card_and_pooled_ones_come_when_asked():
    pooled = {**ROW, "pooled 2": {"c2st": 0.71, "c2st_se": 0.1}, "noise 8": {"c2st": 0.94, "c2st_se": 0.009}}
    args = argparse.Namespace(n=1000, seed=0, c2st_seeds=2, c2st_pool=[2], c2st_noise=[8.0])
    found = bench.tables([pooled], args)
    # tools/ship_model.py puts the first two on the model card
    assert list(found) == ["table", "round_trip_table", "pooled_table", "shape_table"]
    assert found["table"].caption.startswith("1000 images per set") and "5 folds x 2 seed(s)" in found["table"].caption
    assert found["pooled_table"].lines == [
        "| images | 64 px | 32 px | 64 px + noise of 8 levels |", "| --- | --- | --- | --- |",
        "| a model | 0.938 ± 0.013 | 0.710 ± 0.100 | 0.940 ± 0.009 |"]
    assert "pooled_table" not in bench.tables([ROW], argparse.Namespace(**{**vars(args), "c2st_pool": [],
                                                                            "c2st_noise": []}))


def test_the_two_sample_entries_pool_every_seed_and_the_noise_is_drawn_per_set():
    real, generated = scenes(40, seed=1), blurred(scenes(40, seed=2))
    pooled = bench.two_sample_row(real, generated, seeds=2, **QUICK)
    each = [two_sample_accuracy(real, generated, seed=seed, **QUICK) for seed in range(2)]
    assert pooled["c2st_folds"] == [*each[0].folds, *each[1].folds]
    assert pooled["c2st"] == pytest.approx(sum(pooled["c2st_folds"]) / 10)
    assert pooled["c2st_log_loss"] == pytest.approx((each[0].log_loss + each[1].log_loss) / 2)
    assert bench.two_sample_row(real, generated, seeds=0) == {}
    flat = torch.zeros(2, 3, 64, 64)
    noisy = bench.with_noise(flat, 8, seed=1)
    assert (noisy * 127.5).std().item() == pytest.approx(8, rel=0.02)
    assert torch.equal(noisy, bench.with_noise(flat, 8, seed=1))
    assert not torch.equal(noisy, bench.with_noise(flat, 8, seed=2))
    with pytest.raises(argparse.ArgumentTypeError, match=r"noise level 80: give grey levels in \(0, 64\]"):
        bench.noise_level("80")


def test_main_draws_scores_and_writes_what_the_model_card_reads(tiny_root, tiny_run, evaluator_file, tmp_path, capsys):
    out = tmp_path / "fidelity.json"
    bench.main(["--data-root", str(tiny_root), "--evaluator", str(evaluator_file), "--n", "2", "--c2st-seeds", "0",
                "--row", f"tiny={tiny_run}:steps=2", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["n"] == 2 and record["table"][0].startswith("| images | edge acutance |")
    assert [row["label"] for row in record["rows"]] == ["real images (the floor: N other real images)",
                                                        "real images through 32 px", "tiny"]
    assert "| tiny |" in capsys.readouterr().out and record["round_trip_table"] and record["shape_table"]

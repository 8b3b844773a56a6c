"""The classifier two-sample test tells a real difference apart, stays at chance on one distribution, repeats
itself for a seed, and leads bench_fidelity's table; edge acutance sees soft edges and not grain."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lab6.fidelity import edge_acutance, sharpness, two_sample_accuracy

#: Small and quick: 32-px images, a few dozen steps per fold (a few seconds on one core).
QUICK = {"epochs": 1, "min_steps": 80, "batch_size": 32}


def scenes(n: int, seed: int, size: int = 32, noise: float = 0.05) -> torch.Tensor:
    """Random i-CLEVR-like scenes in [-1, 1]: a grey floor of random brightness, two squares of random colour,
    size and place, and pixel noise of ``noise``; the same ``seed`` draws the same scenes."""
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 1, 1, generator=generator) * 0.4 - 0.3).expand(n, 3, size, size).clone()
    for i in range(n):
        for _ in range(2):
            side = int(torch.randint(5, 12, (), generator=generator))
            y, x = torch.randint(0, size - side, (2,), generator=generator).tolist()
            images[i, :, y:y + side, x:x + side] = torch.rand(3, 1, 1, generator=generator) * 1.6 - 0.8
    return (images + noise * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def blurred(images: torch.Tensor) -> torch.Tensor:
    """The same scenes through half size and back: soft edges, no grain."""
    half = F.interpolate(images, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(half, size=images.shape[-2:], mode="bilinear", align_corners=False)


def test_sharp_scenes_are_told_from_the_same_scenes_blurred():
    images = scenes(80, seed=1)
    result = two_sample_accuracy(images, blurred(scenes(80, seed=2)), **QUICK)
    assert result.accuracy > 0.9 and result.log_loss < 0.3  # told apart, and with confidence (chance: ln 2)
    assert len(result.folds) == 5 and result.accuracy == pytest.approx(sum(result.folds) / 5)


def test_two_samples_of_one_distribution_stay_near_chance():
    # held-out accuracy on other scenes: a classifier scored on images it trained on would score far above 0.5
    results = [two_sample_accuracy(scenes(80, seed=1), scenes(80, seed=2), seed=seed, **QUICK) for seed in range(2)]
    pooled = sum(r.accuracy for r in results) / len(results)
    assert 0.38 < pooled < 0.62, [r.folds for r in results]
    assert all(0 < r.standard_error < 0.15 for r in results)
    assert all(r.log_loss > 0.6 for r in results)  # near ln 2 = 0.693: no confident guesses


def test_a_seed_repeats_the_test_exactly_and_leaves_the_global_random_state_alone():
    real, generated = scenes(40, seed=3), blurred(scenes(40, seed=4)) + 0.05
    state = torch.get_rng_state()
    first = two_sample_accuracy(real, generated, seed=5, **QUICK)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # the global random state plays no part
    assert two_sample_accuracy(real, generated, seed=5, **QUICK) == first
    null = two_sample_accuracy(real, scenes(40, seed=6), seed=5, **QUICK)
    assert two_sample_accuracy(real, scenes(40, seed=6), seed=6, **QUICK).folds != null.folds


def test_the_sets_are_balanced_and_must_match_in_shape():
    # 60 real against 30 generated: both cut to 30, so 6 + 6 held-out images per fold, accuracies in steps of
    # 1/12 (all 90 images would make folds of 18)
    result = two_sample_accuracy(scenes(60, seed=1), blurred(scenes(30, seed=2)), **QUICK)
    assert all(abs(a * 12 - round(a * 12)) < 1e-6 for a in result.folds), result.folds
    with pytest.raises(ValueError, match="same"):
        two_sample_accuracy(scenes(10, seed=1), scenes(10, seed=2, size=16))
    with pytest.raises(ValueError, match="5 folds"):
        two_sample_accuracy(scenes(3, seed=1), scenes(3, seed=2))


def test_bench_fidelity_puts_the_two_sample_test_first_with_its_standard_error():
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_fidelity.py"
    spec = importlib.util.spec_from_file_location("bench_fidelity", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = {"label": "a model", "c2st": 0.9375, "c2st_se": 0.0125, "c2st_log_loss": 0.2468, "edge": 1.7712,
           "sharpness": 1.25, "grid": 31.7,
           "colour_grain": 4.6, "cast": 0.93, "cast_p90": 1.45, "cast_over_8": 0.0, "seconds": 19.9,
           "fd r": 102.7, "acc r": 0.896}
    header, rule, line = bench.markdown_table([row], ["r"])
    assert header.count("|") == rule.count("|") == line.count("|")
    headings = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert headings[:5] == ["images", "two-sample test (0.5 = real)", "its log-loss (real: >= 0.69)", "edge acutance",
                            "Frechet (r)"]
    assert cells[:5] == ["a model", "0.938 ± 0.013", "0.247", "1.771", "102.7"]
    # pooled over seeds: every fold of every seed counts once, the log-loss is the seeds' mean
    real, generated = scenes(40, seed=1), blurred(scenes(40, seed=2))
    pooled = bench.two_sample_row(real, generated, seeds=2, **QUICK)
    assert len(pooled["c2st_folds"]) == 10
    assert pooled["c2st"] == pytest.approx(sum(pooled["c2st_folds"]) / 10)
    each = [two_sample_accuracy(real, generated, seed=seed, **QUICK) for seed in range(2)]
    assert pooled["c2st_folds"] == [*each[0].folds, *each[1].folds]
    assert pooled["c2st_log_loss"] == pytest.approx((each[0].log_loss + each[1].log_loss) / 2)
    assert bench.two_sample_row(scenes(40, seed=1), scenes(40, seed=2), seeds=0) == {}
    pooled_row = {**row, "pooled 2": {"c2st": 0.71, "c2st_se": 0.1}, "pooled 4": {"c2st": 0.645, "c2st_se": 0.058}}
    assert bench.pooled_two_sample_table([pooled_row], [2, 4]) == [
        "| images | 64 px | 32 px | 16 px |", "| --- | --- | --- | --- |",
        "| a model | 0.938 ± 0.013 | 0.710 ± 0.100 | 0.645 ± 0.058 |"]
    noisy_row = {**pooled_row, "noise 8": {"c2st": 0.94, "c2st_se": 0.009}}
    assert bench.pooled_two_sample_table([noisy_row], [2], [8]) == [
        "| images | 64 px | 32 px | 64 px + noise of 8 levels |", "| --- | --- | --- | --- |",
        "| a model | 0.938 ± 0.013 | 0.710 ± 0.100 | 0.940 ± 0.009 |"]
    # the noise is drawn afresh for each set (other seeds), at the standard deviation asked, in grey levels
    flat = torch.zeros(2, 3, 64, 64)
    noisy = bench.with_noise(flat, 8, seed=1)
    assert (noisy * 127.5).std().item() == pytest.approx(8, rel=0.02)
    assert torch.equal(noisy, bench.with_noise(flat, 8, seed=1))
    assert not torch.equal(noisy, bench.with_noise(flat, 8, seed=2))


def test_edge_acutance_reads_the_width_of_edges_not_their_contrast_or_grain():
    step = torch.full((1, 3, 64, 64), -0.5)
    step[..., 32:] = 0.5
    faint = step.clone()
    faint[..., 32:] = -0.3
    # a step from one pixel to the next: 2.06 whatever its contrast
    torch.testing.assert_close(edge_acutance(step), torch.tensor([2.0624]), atol=1e-3, rtol=0)
    torch.testing.assert_close(edge_acutance(faint), edge_acutance(step))
    images = scenes(20, seed=1, size=64, noise=0)
    soft = blurred(images)
    grainy = images + 0.03 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    assert edge_acutance(soft).mean() < edge_acutance(images).mean() - 0.15
    # grain that doubles the sharpness (a Laplacian's variance) moves acutance by little
    assert sharpness(grainy).mean() > 2 * sharpness(images).mean()
    assert abs(edge_acutance(grainy).mean() - edge_acutance(images).mean()) < 0.06

"""Sampling speed and accuracy per sampler: 32 images at 64x64, side by side in one run.

For each sampler setting: seconds to draw the 32 images of a conditions file (classifier-free guidance
on, the model's guidance scale), and the evaluator's accuracy on them. Target: under 20 s on 2 cores
with at most 1 point of accuracy lost against DDPM-1000.

    python bench/bench_sampling.py [--model M] [--conditions test.json] [--skip-ddpm]
"""

from __future__ import annotations

import argparse
import time

from lab6.data import conditions_file, resolve_data_root
from lab6.evaluator import load_evaluator
from lab6.labels import load_conditions
from lab6.pipeline import generate, load_model

SETTINGS = [("ddpm", 1000), ("ddim", 50), ("dpmsolver", 10), ("dpmsolver", 20), ("dpmsolver", 25)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped model)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="test", help="test, new_test or a conditions file")
    parser.add_argument("--evaluator", default=None)
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 and average the accuracy")
    parser.add_argument("--skip-ddpm", action="store_true", help="leave out DDPM-1000 (minutes on a CPU)")
    args = parser.parse_args()
    root = resolve_data_root(args.data_root, need_images=False)
    conditions = load_conditions(conditions_file(root, args.split))
    loaded = load_model(args.model)
    evaluator = load_evaluator(args.evaluator, root)
    settings = [s for s in SETTINGS if not (args.skip_ddpm and s[0] == "ddpm")]
    rows = []
    for sampler, steps in settings:
        seconds, accuracies = [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            images = generate(loaded, conditions, sampler=sampler, steps=steps, seed=seed, progress=False).images
            seconds.append(time.perf_counter() - start)
            accuracies.append(evaluator.score(images, conditions).accuracy)
        rows.append((sampler, steps, sum(seconds) / len(seconds), sum(accuracies) / len(accuracies)))
        print(f"  {sampler}-{steps}: {rows[-1][2]:.1f} s, accuracy {rows[-1][3]:.4f}", flush=True)
    base = rows[0]
    print(f"\n{len(conditions)} images ({args.split}), guidance {loaded.guidance:g}, model {loaded.path}, "
          f"evaluator {evaluator.source}, {args.seeds} seed(s)\n")
    print(f"| sampler | steps | seconds | speed-up vs {base[0]}-{base[1]} | accuracy | vs {base[0]}-{base[1]} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for sampler, steps, secs, acc in rows:
        print(f"| {sampler} | {steps} | {secs:.1f} | {base[2] / secs:.1f}x | {acc:.4f} | {100 * (acc - base[3]):+.1f} pt |")


if __name__ == "__main__":
    main()

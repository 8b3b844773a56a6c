"""Do generated images look like i-CLEVR? One table: two-sample test, Frechet distance, sharpness, colour, accuracy.

For N generated images on the labels of N held-out real images (held out from both proxy evaluators'
training, so their features have not seen them):

- the headline, a classifier two-sample test (``lab6.fidelity.two_sample_test``): the held-out accuracy of
  a small CNN trained from scratch to tell the row's images from the reference, mean ± standard error over
  5 folds (and ``--c2st-seeds K`` seeds, pooled); 0.5 = indistinguishable, and N other real images show the
  floor. Grain cannot fool it as it fools sharpness: grain, soft edges and rounded cubes all raise it. Its
  held-out log-loss (0 = told apart with certainty; 0.69 or more = not told apart) ranks the rows that it tells
  apart every time;
- Frechet distance to those real images in each evaluator's penultimate features, beside the floor: the
  same distance between the reference and N *other* real images (a perfect model would score the floor);
- edge acutance (``lab6.fidelity.edge_acutance``): how abrupt the objects' outlines are, fine-scale over
  coarse-scale gradient at the strongest edges (the floor row gives real images' value; lower = softer edges),
  which grain does not raise;
- sharpness: mean Laplacian variance over the reference's (1.0 = as sharp as real images);
- 2x2-grid energy over the reference's: the pattern a model on 2x2 patches can draw (1.0 = as real images);
- colour grain over the reference's: fine-scale noise in the colours, which real renders hardly have and
  sharpness (of the grey image) does not see (1.0 = as real images);
- background colour cast (0-255): mean, 90th percentile, share of images above 8;
- top-k accuracy of each evaluator on the generated images' labels, and (a second table) on the same images
  sent through 32 px: an evaluator trained on 32 -> 64 px images misreads native detail, and the gap says so;
- (a third table) the share of each shape's labels each evaluator finds: where an evaluator is blind to
  how one shape looks (the ResNet18 proxy and sharp cubes), and whether a model draws one shape badly;
- seconds to draw 32 images (every stage included), on this machine's threads.

    python bench/bench_fidelity.py --data-root ../shared/iclevr-reference [--n 1000] \\
        --candidate shipped=lab6/assets/model --candidate cpu64=runs/cpu64:sampler=dpmsolver,steps=20

A candidate is ``LABEL=MODEL[:key=value,...]`` with the keys of ``lab6.sampling.generate``: sampler, steps,
guidance, seed, noise (e.g. ``noise=grey-mean``), refine (``refine=false``: a refined model's first stage
alone), and ``refiner=RUN,strength=S[,refiner_guidance=W][,refiner_spacing=uniform][,refiner_step_ratio=R]``
to try a 64-px refiner after MODEL before shipping the pair (``lab6.pipeline.with_refiner``; ``uniform``: the
last steps of a uniform schedule; ``strength=S`` alone: a pair's own refiner at another strength). A refined
candidate also gets a row for its first stage's images (the same draw without the refiner, untimed), at no
cost. Rows for real images and for real images sent through 32 px come first. ``--refiner-alone``: each
candidate's refiner redraws those real 32-px images instead of drawing (what the refiner adds to a perfect
first stage; of generate's keys only steps and seed apply; for other data, e.g. renders, give a set of 11,000
images or more, ``lab6 data render --out D --n 11000 --seed 1``, so its held-out tenth holds 1,000 references).
``--json FILE`` also writes the rows and the printed table (``tools/ship_model.py
--fidelity`` puts it on the model card). Needs the real data (the held-out images) and the shipped evaluators.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lab6.data import ICLEVRDataset
from lab6.evaluator import found_by_shape, load_evaluators
from lab6.fidelity import (
    colour_cast,
    colour_grain,
    edge_acutance,
    frechet_distance,
    patch_grid_energy,
    sharpness,
    two_sample_test,
)
from lab6.figures.accuracy import real_vs_generated
from lab6.labels import SHAPES, decode, encode_many
from lab6.pipeline import load_pipeline, refiner_of, with_refiner
from lab6.proxy import split_holdout, upsample_like_official
from lab6.sampling import generate
from lab6.settings import yes_or_no

#: How to read the value of each key that is not a word.
VALUE_READERS = {"steps": int, "guidance": float, "seed": int, "refine": yes_or_no, "strength": float,
                 "refiner_guidance": float, "refiner_step_ratio": float}
#: How to pair MODEL with a refiner: keys that are not generate's.
PAIRING_KEYS = ("refiner", "strength", "refiner_guidance", "refiner_spacing", "refiner_step_ratio")
#: The optional pairing keys, as ``with_refiner`` names them: the ones not given keep its defaults.
PAIRING_OPTIONS = {"refiner_guidance": "guidance", "refiner_spacing": "spacing", "refiner_step_ratio": "step_ratio"}


def candidate(text: str) -> tuple[str, str, dict]:
    """``"label=path:sampler=ddim,steps=50"`` -> ``("label", "path", {"sampler": "ddim", "steps": 50})``."""
    label, sep, rest = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"bad candidate {text!r}: write LABEL=MODEL[:key=value,...]")
    path, _, options = rest.partition(":")
    settings = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"bad option {item!r} in {text!r}: write key=value")
        settings[key] = VALUE_READERS.get(key, str)(value)
    return label, path, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="the real data (course layout)")
    parser.add_argument("--n", type=int, default=1000, help="images per set (default 1000)")
    parser.add_argument("--candidate", type=candidate, action="append", default=[], metavar="LABEL=MODEL[:k=v,...]")
    parser.add_argument("--seed", type=int, default=0, help="which held-out images make the reference set")
    parser.add_argument("--evaluator", action="append", default=None,
                        help="evaluator file; repeat for several (default: the shipped ones)")
    parser.add_argument("--figure", default=None, metavar="FOLDER",
                        help="also draw fidelity_real_vs_generated.png/.pdf there: "
                             "8 real images above each candidate's")
    parser.add_argument("--c2st-seeds", type=int, default=1, metavar="K",
                        help="seeds of the two-sample test, pooled (default 1: 5 folds; about 30 s per seed and row "
                             "for 1,000 images on one thread; 0 leaves the test out)")
    parser.add_argument("--c2st-pool", type=int, nargs="*", default=[], metavar="P",
                        help="also the two-sample test on both sets average-pooled P x P (2: 32 px, 4: 16 px), in "
                             "a table of its own: does the difference lie in fine detail or in layout and shape?")
    parser.add_argument("--c2st-noise", type=float, nargs="*", default=[], metavar="L",
                        help="also the two-sample test on both sets with Gaussian noise of L grey levels added (a "
                             "fresh draw per set), in the table of --c2st-pool: noise of a few levels drowns the "
                             "grain, so what is still told apart lies in edges, shapes and colours")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the rows and the table")
    parser.add_argument("--refiner-alone", action="store_true",
                        help="instead of drawing, each candidate's refiner redraws the real images sent through "
                             "32 px: the refiner measured apart from any first stage (a candidate needs a refiner)")
    args = parser.parse_args()
    if args.c2st_seeds < 0:
        raise SystemExit(f"--c2st-seeds {args.c2st_seeds}: give 0 (no two-sample test) or more")
    if args.c2st_pool and (not args.c2st_seeds or any(pool not in (2, 4, 8) for pool in args.c2st_pool)):
        raise SystemExit(f"--c2st-pool {args.c2st_pool}: give 2, 4 or 8, with --c2st-seeds 1 or more")
    if args.c2st_noise and (not args.c2st_seeds or any(not 0 < level <= 64 for level in args.c2st_noise)):
        raise SystemExit(f"--c2st-noise {args.c2st_noise}: give levels in (0, 64], with --c2st-seeds 1 or more")

    evaluators = load_evaluators(args.evaluator, None)
    dataset = ICLEVRDataset(args.data_root, image_size=64, progress=False)
    held, train = split_holdout(len(dataset))  # the proxies' split: seed 0, 10%
    g = torch.Generator().manual_seed(args.seed)
    if args.n > len(held):
        raise SystemExit(f"--n {args.n} is more than the {len(held)} held-out images")
    reference_idx = held[torch.randperm(len(held), generator=g)[:args.n]]
    # The floor's second set must not overlap the reference; the held-out images are too few for two sets of
    # 1,000, so it comes from the proxies' training images (their features saw these: a slightly high floor).
    others = torch.cat([held[~torch.isin(held, reference_idx)], train[torch.randperm(len(train), generator=g)]])
    reference, labels = dataset.batch(reference_idx)
    conditions = [decode(row) for row in labels]
    other_images, other_labels = dataset.batch(others[:args.n])
    other_conditions = [decode(row) for row in other_labels]
    reference_features = {e.name: e.features(reference) for e in evaluators}
    real_sharpness = float(sharpness(reference).mean())
    real_grid = float(patch_grid_energy(reference).mean())
    real_colour_grain = float(colour_grain(reference).mean())

    rows = []
    drawn = {}  # candidate label -> its images, for --figure

    def add_row(label: str, images: torch.Tensor, image_conditions, seconds: float | None, native: bool) -> None:
        casts = colour_cast(images)
        row = {"label": label, **two_sample_row(reference, images, args.c2st_seeds),
               **{f"pooled {pool}": two_sample_row(F.avg_pool2d(reference, pool), F.avg_pool2d(images, pool),
                                                    args.c2st_seeds) for pool in args.c2st_pool},
               **{f"noise {level:g}": two_sample_row(with_noise(reference, level, 1), with_noise(images, level, 2),
                                                      args.c2st_seeds) for level in args.c2st_noise},
               "edge": float(edge_acutance(images).mean()),
               "sharpness": float(sharpness(images).mean()) / real_sharpness,
               "grid": float(patch_grid_energy(images).mean()) / real_grid,
               "colour_grain": float(colour_grain(images).mean()) / real_colour_grain,
               "cast": float(casts.mean()), "cast_p90": float(casts.quantile(0.9)),
               "cast_over_8": float((casts > 8).float().mean()), "seconds": seconds}
        multi_hot = torch.tensor(encode_many(image_conditions))
        for e in evaluators:
            row[f"fd {e.name}"] = frechet_distance(reference_features[e.name], e.features(images))
            score = e.score(images, image_conditions)
            row[f"acc {e.name}"] = score.accuracy
            row[f"shapes {e.name}"] = found_by_shape(score.probabilities, multi_hot)
            if native:  # images already through 32 px would be blurred twice: no round trip for them
                row[f"acc32 {e.name}"] = e.score(upsample_like_official(images, 32), image_conditions).accuracy
        rows.append(row)
        print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)

    add_row("real images (the floor: N other real images)", other_images, other_conditions, None, native=True)
    through_32 = upsample_like_official(other_images, 32)
    add_row("real images through 32 px", through_32, other_conditions, None, native=False)
    for label, path, settings in args.candidate:
        loaded = load_pipeline(path)
        pairing = {key: settings.pop(key) for key in PAIRING_KEYS if key in settings}
        if pairing:
            if "strength" not in pairing or ("refiner" not in pairing and loaded.refiner is None):
                raise SystemExit(f"candidate {label!r}: a refiner needs strength=S, "
                                 "and refiner=RUN unless MODEL has one")
            options = {name: pairing[key] for key, name in PAIRING_OPTIONS.items() if key in pairing}
            refiner = load_pipeline(pairing["refiner"]) if "refiner" in pairing else refiner_of(loaded)
            loaded = with_refiner(loaded, refiner, pairing["strength"], **options)
        if args.refiner_alone:
            if loaded.refiner is None:
                raise SystemExit(f"candidate {label!r} has no refiner to measure alone: give refiner=RUN,strength=S")
            unused = sorted(set(settings) - {"steps", "seed"})  # the first stage's keys: no first stage runs here
            if unused:
                raise SystemExit(f"candidate {label!r}: --refiner-alone draws no first stage, so {', '.join(unused)} "
                                 "would change nothing; give only steps, seed and the refiner's keys")
            start = time.perf_counter()
            refined = loaded.refine((through_32 + 1) / 2, other_conditions, settings.get("steps", 20),
                                    torch.Generator().manual_seed(settings.get("seed", 0))) * 2 - 1
            seconds = (time.perf_counter() - start) * 32 / len(other_conditions)
            add_row(f"{label}: its refiner on real images through 32 px", refined, other_conditions, seconds, True)
            continue
        start = time.perf_counter()
        result = generate(loaded, conditions, progress=True, **settings)
        seconds = (time.perf_counter() - start) * 32 / len(conditions)
        if result.first_stage is not None:  # the images refine=false draws, kept by the refined call: a free row
            add_row(f"{label}: its first stage alone", result.first_stage, conditions, None, native=False)
            drawn[f"{label}: its first stage alone"] = result.first_stage[:8]
        images = result.images
        native = result.first_stage is not None or loaded.unet.config.sample_size == images.shape[-1]
        add_row(label, images, conditions, seconds, native)
        drawn[label] = images[:8]
    if args.figure:
        real_vs_generated(reference[:8], drawn, conditions[:8], args.figure)

    names = [e.name for e in evaluators]
    print(f"\n{args.n} images per set; reference: held-out real images (seed {args.seed}); "
          f"{torch.get_num_threads()} thread(s)")
    if args.c2st_seeds:
        print(f"two-sample test: held-out accuracy of a CNN telling the images from the reference (0.5 = as real), "
              f"± standard error over 5 folds x {args.c2st_seeds} seed(s)")
    print()
    table = markdown_table(rows, names)
    print("\n".join(table))
    round_trip = round_trip_table(rows, names)
    print("\nNative 64-px images sent through 32 px before scoring: what an evaluator trained on 32 -> 64 px images "
          "(the course's, the ResNet18 proxy) reads of their labels once their 64-px detail is gone\n")
    print("\n".join(round_trip))
    if args.c2st_pool or args.c2st_noise:
        pooled = pooled_two_sample_table(rows, args.c2st_pool, args.c2st_noise)
        print("\nThe two-sample test on both sets average-pooled (64 px at full detail, then coarser) or with noise "
              "added to both (the grain drowned); 0.5 = real\n")
        print("\n".join(pooled))
    shapes = shape_table(rows, names)
    print("\nThe share of each shape's labels found: an evaluator blind to how one shape looks, or a model that "
          "draws one badly\n")
    print("\n".join(shapes))
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "seed": args.seed, "threads": torch.get_num_threads(),
                                         "c2st_seeds": args.c2st_seeds,
                                         "evaluators": names, "rows": rows, "table": table,
                                         "round_trip_table": round_trip, "shape_table": shapes}, indent=2))


def two_sample_row(reference: torch.Tensor, images: torch.Tensor, seeds: int, **options) -> dict:
    """The two-sample test's entries of a row (``lab6.fidelity.two_sample_test`` over ``seeds`` seeds pooled):
    accuracy, its standard error, each fold's accuracy and the log-loss; none for 0 seeds."""
    if not seeds:
        return {}
    result = two_sample_test(reference, images, seeds=seeds, **options)
    return {"c2st": result.accuracy, "c2st_se": result.standard_error, "c2st_folds": list(result.folds),
            "c2st_log_loss": result.log_loss}


def markdown_table(rows: list[dict], names: list[str]) -> list[str]:
    """The main table; the two-sample test comes first and edge acutance next, where the rows have them."""
    c2st, edge = all("c2st" in row for row in rows), all("edge" in row for row in rows)
    lines = ["| images | " + ("two-sample test (0.5 = real) | its log-loss (real: >= 0.69) | " if c2st else "")
             + ("edge acutance | " if edge else "")
             + " | ".join(f"Frechet ({n})" for n in names)
             + " | sharpness / real | 2x2 grid / real | colour grain / real | cast mean | cast p90 | cast > 8 | "
             + " | ".join(f"accuracy ({n})" for n in names) + " | s / 32 images |",
             "| --- " * (2 * len(names) + 8 + 2 * c2st + edge) + "|"]
    for row in rows:
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else ""
        two_sample = f"{row['c2st']:.3f} ± {row['c2st_se']:.3f} | {row['c2st_log_loss']:.3f} | " if c2st else ""
        lines.append(f"| {row['label']} | " + two_sample
                     + (f"{row['edge']:.3f} | " if edge else "")
                     + " | ".join(f"{row[f'fd {n}']:.1f}" for n in names)
                     + f" | {row['sharpness']:.2f} | {row['grid']:.1f} | {row['colour_grain']:.1f} | {row['cast']:.2f}"
                       f" | {row['cast_p90']:.2f} | {row['cast_over_8']:.1%} | "
                     + " | ".join(f"{row[f'acc {n}']:.3f}" for n in names)
                     + f" | {seconds} |")
    return lines


def pooled_two_sample_table(rows: list[dict], pools: list[int], noise_levels: list[float] = ()) -> list[str]:
    """Per row, the two-sample test at 64 px, on both sets average-pooled by each of ``pools``, and on both sets
    with noise of each of ``noise_levels`` added."""
    keys = [*(f"pooled {pool}" for pool in pools), *(f"noise {level:g}" for level in noise_levels)]
    lines = ["| images | 64 px | " + " | ".join([*(f"{64 // pool} px" for pool in pools),
                                                  *(f"64 px + noise of {level:g} levels" for level in noise_levels)])
             + " |", "| --- " * (2 + len(keys)) + "|"]
    for row in rows:
        cells = [f"{t['c2st']:.3f} ± {t['c2st_se']:.3f}" for t in (row, *(row[key] for key in keys))]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


def with_noise(images: torch.Tensor, levels: float, seed: int) -> torch.Tensor:
    """``images`` in [-1, 1] plus Gaussian noise of standard deviation ``levels`` grey levels (0-255 units)."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return images + noise * (levels / 127.5)


def round_trip_table(rows: list[dict], names: list[str]) -> list[str]:
    """For the rows of native 64-px images: accuracy as drawn beside accuracy after the 32 px round trip, per
    evaluator. A gap means the labels are there but the evaluator misreads native detail; low accuracy with
    no gap means lost labels."""
    lines = ["| images | " + " | ".join(f"accuracy ({n}) | through 32 px | gap" for n in names) + " |",
             "| --- " * (1 + 3 * len(names)) + "|"]
    for row in filter(lambda row: f"acc32 {names[0]}" in row, rows):  # native 64-px images only
        lines.append(f"| {row['label']} | " + " | ".join(
            f"{row[f'acc {n}']:.3f} | {row[f'acc32 {n}']:.3f} | {100 * (row[f'acc32 {n}'] - row[f'acc {n}']):+.1f} pt"
            for n in names) + " |")
    return lines


def shape_table(rows: list[dict], names: list[str]) -> list[str]:
    """Per row and evaluator, the share of the cube, sphere and cylinder labels found."""
    lines = ["| images | " + " | ".join(f"{shape} ({n})" for n in names for shape in SHAPES) + " |",
             "| --- " * (1 + len(SHAPES) * len(names)) + "|"]
    for row in rows:
        shares = [row[f"shapes {n}"].get(shape) for n in names for shape in SHAPES]  # None: no such label
        lines.append(f"| {row['label']} | " + " | ".join("" if v is None else f"{v:.3f}" for v in shares) + " |")
    return lines


if __name__ == "__main__":
    main()

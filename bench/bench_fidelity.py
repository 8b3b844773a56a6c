"""Do generated images look like i-CLEVR? One table: two-sample test, Frechet distance, sharpness, colour, accuracy.

For N generated images on the labels of N held-out real images (``harness.reference_set``: held out from both
proxy evaluators' training, so their features have not seen them):

- the headline, a classifier two-sample test (``bench.measures.two_sample_test``): the held-out accuracy of
  a small CNN trained from scratch to tell the row's images from the reference, mean ± standard error over
  5 folds (and ``--c2st-seeds K`` seeds, pooled); 0.5 = indistinguishable, and N other real images show the
  floor. Grain cannot fool it as it fools sharpness: grain, soft edges and rounded cubes all raise it. Its
  held-out log-loss (0 = told apart with certainty; 0.69 or more = not told apart) ranks the rows that it tells
  apart every time;
- Frechet distance to those real images in each evaluator's penultimate features, beside the floor: the
  same distance between the reference and N *other* real images (a perfect model would score the floor);
- edge acutance (``bench.measures.edge_acutance``): how abrupt the objects' outlines are, fine-scale over
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

    python -m bench.bench_fidelity --data-root ../shared/iclevr-reference [--n 1000] \\
        --row shipped= --row cpu64=runs/cpu64:sampler=dpmsolver,steps=20

A row (``--row`` or ``--candidate``) is ``LABEL=MODEL[:key=value,...]`` or
``LABEL=model=MODEL,key=value,...`` (no model: the shipped one) with the keys of ``harness.SAMPLING_KEYS``:
sampler, steps, guidance, noise (e.g. ``noise=grey-mean``), refine (``refine=false``: a refined model's first
stage alone), seed; and of ``harness.PAIRING_KEYS``, to try a 64-px refiner after MODEL before shipping the pair:
``refiner=RUN,strength=S`` (``strength=S`` alone: a pair's own refiner at another strength). A refined row also
gets a row for its first stage's images (the same draw without the refiner, untimed), at no cost. Rows for real
images and for real images sent through 32 px come first. ``--refiner-alone``: each row's refiner redraws those
real 32-px images instead of drawing (what the refiner adds to a perfect first stage; of the first stage's keys
only steps and seed apply; for other data, e.g. renders, give a set of 11,000 images or more, ``lab6 data render
--out D --n 11000 --seed 1``, so its held-out tenth holds 1,000 references). ``--json PATH`` also writes the rows
and the printed tables (``tools/ship_model.py --fidelity`` puts them on the model card). Needs the real data
(the held-out images) and the shipped evaluators.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench import harness
from bench.measures import colour_grain, edge_acutance, frechet_distance, patch_grid_energy, two_sample_test
from lab6.evaluator import found_by_shape
from lab6.fidelity import colour_cast, sharpness
from lab6.figures.accuracy import real_vs_generated
from lab6.labels import SHAPES, encode_many
from lab6.loading import load_pipeline
from lab6.proxy import upsample_like_official
from lab6.refiner import RefinedPipeline
from lab6.sampling import generate

ROW_KEYS = {"model": str, **harness.SAMPLING_KEYS, "seed": int, **harness.PAIRING_KEYS}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, evaluators=True)
    harness.add_rows(parser, ROW_KEYS, "--candidate", head="model", help="a model and its settings; repeat")
    parser.add_argument("--n", type=int, default=1000, help="images per set (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="which held-out images make the reference set")
    parser.add_argument("--figure", default=None, metavar="FOLDER",
                        help="also draw fidelity_real_vs_generated.png/.pdf there: 8 real images above each row's")
    parser.add_argument("--c2st-seeds", type=int, default=1, metavar="K",
                        help="seeds of the two-sample test, pooled (default 1: 5 folds; about 30 s per seed and row "
                             "for 1,000 images on one thread; 0 leaves the test out)")
    parser.add_argument("--c2st-pool", type=int, nargs="*", default=[], choices=(2, 4, 8), metavar="P",
                        help="also the two-sample test on both sets average-pooled P x P (2: 32 px, 4: 16 px, 8: 8 px)"
                             ", in a table of its own: does the difference lie in fine detail or in layout and shape?")
    parser.add_argument("--c2st-noise", type=noise_level, nargs="*", default=[], metavar="L",
                        help="also the two-sample test on both sets with Gaussian noise of L grey levels added (a "
                             "fresh draw per set), in the table of --c2st-pool: noise of a few levels drowns the "
                             "grain, so what is still told apart lies in edges, shapes and colours")
    parser.add_argument("--refiner-alone", action="store_true",
                        help="instead of drawing, each row's refiner redraws the real images sent through 32 px: "
                             "the refiner measured apart from any first stage (a row needs a refiner)")
    args = parser.parse_args(argv)
    if args.c2st_seeds < 0 or ((args.c2st_pool or args.c2st_noise) and not args.c2st_seeds):
        parser.error(f"--c2st-seeds {args.c2st_seeds}: give 0 (no two-sample test) or more, and 1 or more with "
                     "--c2st-pool or --c2st-noise")
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def noise_level(text: str) -> float:
    """``--c2st-noise``'s levels: grey levels in (0, 64]."""
    level = float(text)
    if not 0 < level <= 64:
        raise argparse.ArgumentTypeError(f"noise level {text}: give grey levels in (0, 64]")
    return level


def run(args: argparse.Namespace) -> list[dict]:
    """The floor's two rows, then each row's images (and its first stage's, where it has a refiner)."""
    reference = harness.reference_set(harness.data_root(args), args.n, args.seed)
    score = Scorer(reference.images, harness.evaluators(args), args)
    conditions, others = reference.conditions, reference.other_conditions
    through_32 = upsample_like_official(reference.others, 32)
    rows = [score("real images (the floor: N other real images)", reference.others, others),
            score("real images through 32 px", through_32, others, native=False)]
    drawn = {}  # row label -> its first 8 images, for --figure
    for label, settings in args.row:
        pipe = harness.paired(load_pipeline(settings.get("model")), settings)
        if args.refiner_alone:
            rows.append(refiner_alone(pipe, label, settings, through_32, others, score))
            continue
        start = time.perf_counter()
        result = generate(pipe, conditions, harness.sampling(settings))
        seconds = (time.perf_counter() - start) * 32 / len(conditions)
        if result.first_stage is not None:  # the images refine=false draws, kept by the refined call: a free row
            first_label = f"{label}: its first stage alone"
            rows.append(score(first_label, result.first_stage, conditions, native=False))
            drawn[first_label] = result.first_stage[:8]
        native = result.first_stage is not None or pipe.unet.config.sample_size == result.images.shape[-1]
        rows.append(score(label, result.images, conditions, seconds, native=native))
        drawn[label] = result.images[:8]
    if args.figure:
        real_vs_generated(reference.images[:8], drawn, conditions[:8], args.figure)
    return rows


def refiner_alone(pipe, label: str, settings: dict, through_32: torch.Tensor, conditions: list, score) -> dict:
    """The row's refiner on real images sent through 32 px, scored like a drawn row."""
    if not isinstance(pipe, RefinedPipeline):
        raise SystemExit(f"row {label!r} has no refiner to measure alone: give refiner=RUN,strength=S")
    unused = sorted(set(settings) - {"model", "steps", "seed", *harness.PAIRING_KEYS})  # no first stage runs here
    if unused:
        raise SystemExit(f"row {label!r}: --refiner-alone draws no first stage, so {', '.join(unused)} would "
                         "change nothing; give only model, steps, seed and the refiner's keys")
    start = time.perf_counter()
    refined = pipe.refine((through_32 + 1) / 2, conditions, settings.get("steps", 20),
                          torch.Generator().manual_seed(settings.get("seed", 0))) * 2 - 1
    seconds = (time.perf_counter() - start) * 32 / len(conditions)
    return score(f"{label}: its refiner on real images through 32 px", refined, conditions, seconds)


class Scorer:
    """Scores image sets against one reference set, one row each: every measure, and every evaluator's Frechet
    distance, accuracy and share of each shape found (under ``row["scores"][name]``)."""

    def __init__(self, reference: torch.Tensor, evaluators: list, args: argparse.Namespace):
        self.reference, self.evaluators, self.args = reference, evaluators, args
        self.features = {e.name: e.features(reference) for e in evaluators}
        self.real = {"sharpness": float(sharpness(reference).mean()),
                     "grid": float(patch_grid_energy(reference).mean()),
                     "colour_grain": float(colour_grain(reference).mean())}

    def __call__(self, label: str, images: torch.Tensor, conditions: list, seconds: float | None = None, *,
                 native: bool = True) -> dict:
        """``native=False`` for images already through 32 px: no second round trip for their accuracy."""
        reference, args, casts = self.reference, self.args, colour_cast(images)
        row = {"label": label, **two_sample_row(reference, images, args.c2st_seeds),
               **{f"pooled {pool}": two_sample_row(F.avg_pool2d(reference, pool), F.avg_pool2d(images, pool),
                                                    args.c2st_seeds) for pool in args.c2st_pool},
               **{f"noise {level:g}": two_sample_row(with_noise(reference, level, 1), with_noise(images, level, 2),
                                                      args.c2st_seeds) for level in args.c2st_noise},
               "edge": float(edge_acutance(images).mean()),
               "sharpness": float(sharpness(images).mean()) / self.real["sharpness"],
               "grid": float(patch_grid_energy(images).mean()) / self.real["grid"],
               "colour_grain": float(colour_grain(images).mean()) / self.real["colour_grain"],
               "cast": float(casts.mean()), "cast_p90": float(casts.quantile(0.9)),
               "cast_over_8": float((casts > 8).float().mean()), "seconds": seconds, "scores": {}}
        multi_hot = torch.tensor(encode_many(conditions))
        for e in self.evaluators:
            score = e.score(images, conditions)
            row["scores"][e.name] = {"frechet": frechet_distance(self.features[e.name], e.features(images)),
                                     "accuracy": score.accuracy,
                                     "shapes": found_by_shape(score.probabilities, multi_hot)}
            if native:
                through_32 = e.score(upsample_like_official(images, 32), conditions)
                row["scores"][e.name]["accuracy_32"] = through_32.accuracy
        harness.log(label, row)
        return row


def two_sample_row(reference: torch.Tensor, images: torch.Tensor, seeds: int, **options) -> dict:
    """The two-sample test's entries of a row (``two_sample_test`` over ``seeds`` seeds pooled): accuracy, its
    standard error, each fold's accuracy and the log-loss; none for 0 seeds."""
    if not seeds:
        return {}
    result = two_sample_test(reference, images, seeds=seeds, **options)
    return {"c2st": result.accuracy, "c2st_se": result.standard_error, "c2st_folds": list(result.folds),
            "c2st_log_loss": result.log_loss}


def with_noise(images: torch.Tensor, levels: float, seed: int) -> torch.Tensor:
    """``images`` in [-1, 1] plus Gaussian noise of standard deviation ``levels`` grey levels (0-255 units)."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return images + noise * (levels / 127.5)


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """The main table (the model card's), the 32-px round trip, the pooled or noised two-sample test where asked
    for, and the shapes found."""
    names = list(rows[0]["scores"])
    caption = (f"{args.n} images per set; reference: held-out real images (seed {args.seed}); "
               f"{torch.get_num_threads()} thread(s)")
    if args.c2st_seeds:
        caption += (f"\ntwo-sample test: held-out accuracy of a CNN telling the images from the reference (0.5 = as "
                    f"real), ± standard error over 5 folds x {args.c2st_seeds} seed(s)")
    found = {"table": harness.Table(caption, main_table(rows, names)),
             "round_trip_table": harness.Table(
                 "Native 64-px images sent through 32 px before scoring: what an evaluator trained on 32 -> 64 px "
                 "images (the course's, the ResNet18 proxy) reads of their labels once their 64-px detail is gone",
                 round_trip_table(rows, names))}
    if args.c2st_pool or args.c2st_noise:
        found["pooled_table"] = harness.Table(
            "The two-sample test on both sets average-pooled (64 px at full detail, then coarser) or with noise "
            "added to both (the grain drowned); 0.5 = real", pooled_two_sample_table(rows, args.c2st_pool,
                                                                                     args.c2st_noise))
    found["shape_table"] = harness.Table("The share of each shape's labels found: an evaluator blind to how one "
                                         "shape looks, or a model that draws one badly", shape_table(rows, names))
    return found


def main_table(rows: list[dict], names: list[str]) -> list[str]:
    """The two-sample test first (where the rows have it), then edge acutance, Frechet, the image measures,
    accuracy and time."""
    columns = {"images": lambda row: row["label"]}
    if all("c2st" in row for row in rows):
        columns["two-sample test (0.5 = real)"] = lambda row: f"{row['c2st']:.3f} ± {row['c2st_se']:.3f}"
        columns["its log-loss (real: >= 0.69)"] = lambda row: f"{row['c2st_log_loss']:.3f}"
    columns["edge acutance"] = lambda row: f"{row['edge']:.3f}"
    columns.update({f"Frechet ({n})": lambda row, n=n: f"{row['scores'][n]['frechet']:.1f}" for n in names})
    columns.update({"sharpness / real": lambda row: f"{row['sharpness']:.2f}",
                    "2x2 grid / real": lambda row: f"{row['grid']:.1f}",
                    "colour grain / real": lambda row: f"{row['colour_grain']:.1f}",
                    "cast mean": lambda row: f"{row['cast']:.2f}", "cast p90": lambda row: f"{row['cast_p90']:.2f}",
                    "cast > 8": lambda row: f"{row['cast_over_8']:.1%}"})
    columns.update({f"accuracy ({n})": lambda row, n=n: f"{row['scores'][n]['accuracy']:.3f}" for n in names})
    columns["s / 32 images"] = lambda row: "" if row["seconds"] is None else f"{row['seconds']:.1f}"
    return harness.markdown_table(rows, columns)


def round_trip_table(rows: list[dict], names: list[str]) -> list[str]:
    """For the rows of native 64-px images: accuracy as drawn beside accuracy after the 32 px round trip, per
    evaluator. A gap means the labels are there but the evaluator misreads native detail; low accuracy with
    no gap means lost labels."""
    def gap(row: dict, n: str) -> str:
        return f"{100 * (row['scores'][n]['accuracy_32'] - row['scores'][n]['accuracy']):+.1f} pt"

    columns = {"images": lambda row: row["label"]}
    for n in names:
        columns.update({f"accuracy ({n})": lambda row, n=n: f"{row['scores'][n]['accuracy']:.3f}",
                        f"through 32 px ({n})": lambda row, n=n: f"{row['scores'][n]['accuracy_32']:.3f}",
                        f"gap ({n})": lambda row, n=n: gap(row, n)})
    return harness.markdown_table([row for row in rows if "accuracy_32" in row["scores"][names[0]]], columns)


def pooled_two_sample_table(rows: list[dict], pools: list[int], noise_levels: list[float] = ()) -> list[str]:
    """Per row, the two-sample test at 64 px, on both sets average-pooled by each of ``pools``, and on both sets
    with noise of each of ``noise_levels`` added."""
    def cell(key: str | None):
        return lambda row: "{c2st:.3f} ± {c2st_se:.3f}".format(**(row[key] if key else row))

    columns = {"images": lambda row: row["label"], "64 px": cell(None),
               **{f"{64 // pool} px": cell(f"pooled {pool}") for pool in pools},
               **{f"64 px + noise of {level:g} levels": cell(f"noise {level:g}") for level in noise_levels}}
    return harness.markdown_table(rows, columns)


def shape_table(rows: list[dict], names: list[str]) -> list[str]:
    """Per row and evaluator, the share of the cube, sphere and cylinder labels found ("" where none is asked)."""
    def share(row: dict, n: str, shape: str) -> str:
        value = row["scores"][n]["shapes"].get(shape)
        return "" if value is None else f"{value:.3f}"

    columns = {"images": lambda row: row["label"],
               **{f"{shape} ({n})": lambda row, n=n, shape=shape: share(row, n, shape)
                  for n in names for shape in SHAPES}}
    return harness.markdown_table(rows, columns)


if __name__ == "__main__":
    main()

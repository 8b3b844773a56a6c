"""What every benchmark shares: its command line, its rows, its real images, its tables and its JSON.

Every benchmark has the same ``main``::

    def main(argv=None):
        parser = harness.parser(__doc__)      # --json PATH, --data-root D (and --evaluator where it scores)
        parser.add_argument(...)              # its own options
        args = parser.parse_args(argv)
        rows = run(args)                      # one dict per row, plain numbers and text
        harness.report(rows, args, tables(rows, args))

so a benchmark is its ``run`` (what it measures) and its ``tables`` (how it prints), each testable apart.
The settings to compare are written in one language, ``LABEL=key=value,...`` (``parse_row``), the real
images come from one held-out set (``reference_set``), and ``--json PATH`` writes the settings, every row and
every table as printed (``tools/ship_model.py --fidelity`` puts bench_fidelity's on the model card).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import torch

from lab6.data import ICLEVRDataset
from lab6.data_root import load_split, resolve_data_root
from lab6.diffusion import INITIAL_NOISE
from lab6.labels import decode, heldout_conditions
from lab6.loading import load_pipeline
from lab6.proxy import split_holdout
from lab6.refiner import RefinedPipeline, refiner_of, with_refiner
from lab6.samplers import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS
from lab6.sampling import Sampling
from lab6.scoring import load_evaluators

#: Where the course's data sits when it is beside the checkout (``shared/`` next to it).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "iclevr-reference"


def parser(doc: str, *, data: bool = True, evaluators: bool = False) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as ``--help``, ``--json PATH``, and ``--data-root D`` unless it
    needs no data (``data=False``), ``--evaluator FILE`` where it scores images (``evaluators=True``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the settings, every row and the printed tables there")
    if data:
        parser.add_argument("--data-root", default=None, metavar="D",
                            help=f"the course's data (default: $LAB6_DATA, else {SHARED_DATA} if present)")
    if evaluators:
        parser.add_argument("--evaluator", action="append", default=None, metavar="FILE",
                            help="evaluator file; repeat for several (default: the data root's checkpoint.pth, "
                                 "else the shipped ResNet18 proxy, and every other shipped proxy)")
    return parser


def data_root(args: argparse.Namespace) -> Path:
    """``--data-root``, else ``$LAB6_DATA``, else ``SHARED_DATA`` where it exists. Never the built-in synthetic
    set that the package falls back on: a benchmark's numbers are about the course's images and conditions."""
    chosen = args.data_root or os.environ.get("LAB6_DATA") or (SHARED_DATA if SHARED_DATA.is_dir() else None)
    if chosen is None:
        raise SystemExit(f"no data root: give --data-root D or set LAB6_DATA to the course's data (objects.json, "
                         f"train.json, test.json, new_test.json, iclevr/), or put it at {SHARED_DATA}")
    try:
        return resolve_data_root(chosen)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None


def evaluators(args: argparse.Namespace) -> list:
    """The evaluators to score with: ``--evaluator`` files, else lab6's defaults for the data root."""
    return load_evaluators(args.evaluator, data_root(args))


def yes_or_no(text: str) -> bool:
    """A switch's value: ``true`` or ``false`` (any case), nothing else."""
    if text.strip().lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text.strip().lower() == "true"


def one_of(*choices: str) -> Callable[[str], str]:
    """A reader that takes one of ``choices`` and refuses anything else, naming them."""
    def read(text: str) -> str:
        if text not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return text
    return read


def int_list(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``: seeds, worker counts."""
    numbers = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise argparse.ArgumentTypeError(f"bad list {text!r}: write whole numbers and ranges, e.g. 0-10 or 0,2,5")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers


#: How values that do not say why they were refused are described.
_WANTED = {int: "a whole number", float: "a number"}


def parse_row(text: str, keys: Mapping[str, Callable[[str], object]], *, head: str | None = None,
              other: Callable[[str], object] | None = None) -> tuple[str, dict]:
    """One row to compare: ``"LABEL=key=value,..."`` -> ``(LABEL, {key: keys[key](value), ...})``.

    Every key is checked: one not in ``keys`` is refused, naming those allowed, unless ``other`` reads it (a
    diffusers scheduler's open set of options); a value that its reader refuses is named with its key.
    ``LABEL=`` alone is a row with nothing changed (the model as shipped).

    ``head`` names the key that a row may give first, bare, ended by ``:`` (``LABEL=MODEL:steps=10``); a row
    that starts with its head may leave out its label, and is then labelled by its own text
    (``DDIMScheduler-50:clip_sample=false``).
    """
    form = f"[LABEL=]{head.upper()}[:key=value,...] or " if head else ""
    if head is None or "=" in text.partition(":")[0]:
        label, sep, rest = text.partition("=")
        if not sep or not label.strip():
            raise argparse.ArgumentTypeError(f"bad row {text!r}: write {form}LABEL=key=value,...")
    else:
        label, rest = text, text
    settings = {}
    if head is not None and rest and "=" not in rest.partition(":")[0]:
        value, _, rest = rest.partition(":")
        settings[head] = _read(keys[head], head, value, text)
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or (key not in keys and other is None):
            raise argparse.ArgumentTypeError(f"bad option {item!r} in row {text!r}: write key=value with key one "
                                             f"of {', '.join(keys)}")
        settings[key] = _read(keys.get(key, other), key, value, text)
    return label.strip(), settings


def _read(reader: Callable[[str], object], key: str, value: str, text: str) -> object:
    try:
        return reader(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        raise argparse.ArgumentTypeError(f"bad value {value!r} for {key} in row {text!r}: "
                                         f"{_WANTED.get(reader, err)}") from None


def add_rows(parser: argparse.ArgumentParser, keys: Mapping[str, Callable[[str], object]], *aliases: str,
             head: str | None = None, other: Callable[[str], object] | None = None, help: str = "") -> None:
    """``--row`` (and ``aliases``, e.g. ``--candidate``): rows in ``parse_row``'s language, repeated or several
    after one flag, as ``args.row``, a list of ``(label, settings)`` (empty when none is given)."""
    metavar = f"[LABEL=]{head.upper()}[:k=v,...]" if head else "LABEL=k=v,..."
    parser.add_argument("--row", *aliases, dest="row", action="extend", nargs="+", default=[], metavar=metavar,
                        type=functools.partial(parse_row, keys=keys, head=head, other=other), help=help)


#: A row's keys for how the first stage draws: ``lab6.sampling.Sampling``'s (``guidance``: its guidance_scale),
#: each the model's own (the sampler's default steps) where not given.
SAMPLING_KEYS = {"sampler": one_of(*SAMPLERS), "steps": int, "guidance": float, "noise": one_of(*INITIAL_NOISE),
                 "refine": yes_or_no}
#: A row's keys for the 64-px refiner: another refiner run, the last share of its schedule it redraws, its steps
#: (or steps per first-stage step), guidance and timestep spacing (``lab6.refiner.with_refiner``).
PAIRING_KEYS = {"refiner": str, "strength": float, "refiner_steps": int, "refiner_step_ratio": float,
                "refiner_guidance": float, "refiner_spacing": one_of("karras", "uniform")}


def sampling(settings: Mapping, seed: int = 0) -> Sampling:
    """How a row's first stage draws (``SAMPLING_KEYS``; ``seed`` unless the row gives its own)."""
    return Sampling(sampler=settings.get("sampler"), steps=settings.get("steps"),
                    guidance_scale=settings.get("guidance"), noise=settings.get("noise"),
                    seed=settings.get("seed", seed), refine=settings.get("refine", True))


def paired(pipe, settings: Mapping):
    """``pipe`` with the refiner a row's ``PAIRING_KEYS`` ask for, or ``pipe`` itself when it gives none.

    Keys not given keep the model's own pairing (its refiner, strength, guidance, spacing, steps), or, for
    another refiner (``refiner=RUN``), ``with_refiner``'s defaults; ``refiner_steps`` counts at the row's steps.
    """
    if not any(key in settings for key in PAIRING_KEYS):
        return pipe
    own = "refiner" not in settings
    if own and not isinstance(pipe, RefinedPipeline):
        raise SystemExit(f"row {dict(settings)}: the model has no refiner; give refiner=RUN,strength=S")
    if not own and "strength" not in settings:
        raise SystemExit(f"row {dict(settings)}: refiner=RUN needs strength=S, the last share of its schedule it "
                         "redraws")
    refiner = load_pipeline(settings["refiner"]) if "refiner" in settings else refiner_of(pipe)
    config = pipe.config if own else {}
    steps = settings.get("steps") or DEFAULT_STEPS[settings.get("sampler", DEFAULT_SAMPLER)]
    ratio = (settings["refiner_steps"] / steps if "refiner_steps" in settings
             else settings.get("refiner_step_ratio", config.get("refiner_step_ratio")))
    options = {"guidance_scale": settings.get("refiner_guidance", config.get("refiner_guidance_scale")),
               "spacing": settings.get("refiner_spacing", config.get("refiner_spacing")), "step_ratio": ratio}
    strength = settings.get("strength", config.get("refiner_strength"))
    return with_refiner(pipe, refiner, strength, **{k: v for k, v in options.items() if v is not None})


def scoring_sets(root: str | Path, heldout_labels: int) -> dict[str, list[list[str]]]:
    """The conditions accuracy is pooled over: test, new_test and the first held-out conditions that hold
    ``heldout_labels`` labels (in the order of ``labels.heldout_conditions``, so the shipped 128 come first)."""
    heldout, labels = [], 0
    for condition in heldout_conditions(4 * heldout_labels):
        if labels >= heldout_labels:
            break
        heldout.append(condition)
        labels += len(condition)
    return {"test": load_split(root, "test"), "new_test": load_split(root, "new_test"), "heldout": heldout}


class ReferenceSet(NamedTuple):
    """The real images the fidelity benchmarks measure against, held out from both proxy evaluators' training
    (the proxies' split, ``lab6.proxy.split_holdout``), so their features have not seen them."""

    images: torch.Tensor  # (n, 3, 64, 64) in [-1, 1]: held-out images, the reference
    conditions: list[list[str]]  # their labels: what the generated images are drawn for
    others: torch.Tensor  # n other real images: the rest of the held-out ones, then training images (the floor)
    other_conditions: list[list[str]]
    train: torch.Tensor  # the indices of the training images, which hold no held-out image
    dataset: ICLEVRDataset


def reference_set(root: str | Path, n: int, seed: int = 0) -> ReferenceSet:
    """``n`` held-out real images chosen by ``seed``, and ``n`` others for the floor: the same sets for every
    benchmark and study given the same ``n`` and ``seed``."""
    dataset = ICLEVRDataset(root, image_size=64, progress=False)
    held, train = split_holdout(len(dataset))
    if not 0 < n <= len(held):
        raise SystemExit(f"{n} reference images asked for: give 1 to {len(held)}, the held-out tenth of the "
                         f"{len(dataset)} images in {root}")
    generator = torch.Generator().manual_seed(seed)
    reference = held[torch.randperm(len(held), generator=generator)[:n]]
    # The held-out images are too few for two sets of 1,000, so the floor's set goes on into the proxies' training
    # images (their features saw those: a slightly high floor).
    others = torch.cat([held[~torch.isin(held, reference)], train[torch.randperm(len(train), generator=generator)]])
    images, labels = dataset.batch(reference)
    other_images, other_labels = dataset.batch(others[:n])
    return ReferenceSet(images, [decode(row) for row in labels], other_images, [decode(row) for row in other_labels],
                        train, dataset)


class Table(NamedTuple):
    """One printed table: a caption above it, its markdown lines, and a note below it."""

    caption: str
    lines: list[str]
    note: str = ""


def markdown_table(rows: Sequence, columns: Mapping[str, Callable[[object], str]]) -> list[str]:
    """A markdown table with one line per item of ``rows`` (a row's dict, or a label): ``columns`` maps each
    heading to the function that writes its cell ("" where it does not apply)."""
    lines = ["| " + " | ".join(columns) + " |", "| --- " * len(columns) + "|"]
    return lines + ["| " + " | ".join(cell(row) for cell in columns.values()) + " |" for row in rows]


def log(label: str, row: dict) -> None:
    """A row's numbers as soon as it has them, so that a long run shows its rows before its tables."""
    numbers = ", ".join(f"{key} {value:.3f}" for key, value in row.items() if isinstance(value, float))
    print(f"  {label}: {numbers}", flush=True)


def report(rows: list[dict], args: argparse.Namespace, tables: Mapping[str, Table]) -> None:
    """Print every table, its caption above and its note below, and write ``--json``."""
    for table in tables.values():
        print("\n" + (f"{table.caption}\n\n" if table.caption else "") + "\n".join(table.lines)
              + (f"\n\n{table.note}" if table.note else ""))
    if args.json:
        write_json(rows, args, tables)


def write_json(rows: list[dict], args: argparse.Namespace, tables: Mapping[str, Table] | None = None) -> None:
    """``--json``: every setting of the command line, the thread count, the rows and each table's printed lines
    under its name, in one object (a benchmark that runs long writes it after each step, before its tables)."""
    record = {**vars(args), "threads": torch.get_num_threads(), "rows": rows,
              **{name: table.lines for name, table in (tables or {}).items()}}
    args.json.write_text(json.dumps(record, indent=1, default=str))

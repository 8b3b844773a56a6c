"""Can an adversarial 64-px pass make a model's images look real? No: neither after the refiner nor instead of it.

**Answer** (docs/64px.md#an-adversarial-finisher). Trained for 25 CPU-minutes each on one thread and scored on
500 held-out labels (5 folds x 2 seeds), a finisher after the refiner and one instead of it are both told apart
from real images every time at 64 px (two-sample test 1.000 ± 0.000, log-loss 0.002, as low as the refined
images' 0.003; the floor: 0.517 ± 0.008), and neither comes nearer: after the refiner the finisher makes the
images easier to tell apart at 32 px (0.950 ± 0.050 against 0.865 ± 0.046). Instead of the refiner it sharpens
the first stage's edges part of the way (edge acutance 1.666, between the first stage's 1.524 and the refiner's
1.736) near the first stage's accuracy, but is told apart even at 32 px (1.000 ± 0.000). The labels survive both
(the RegNetY within 1.4 points of the images they started from). 25 CPU-minutes buy 723 and 578 adversarial
steps of batch 32, where GAN upsamplers train for hundreds of thousands; an exploratory run of the first
candidate, longer and on more data (45 minutes of one core, 6,000 pairs, 2,048 drawn images, 1,250 adversarial
steps), did no better: 1.000 at 64 px and 0.987 pooled to 32 px on 1,000 held-out labels. An adversarial stage is
a job for a GPU; on this machine it is not worth a shipped component.

**Question.** The two-sample test tells the shipped model's images from real ones every time at 64 px, and does
so even for its refiner given real images sent through 32 px (``bench_fidelity --refiner-alone``): the 64-px
stage is where realism is lost. The field's tool for the finest scale is an adversarial term (ESRGAN; the
decoders of latent diffusion). Each candidate here is a small residual CNN (``Finisher``) that runs once on a
model's 64-px images, trained for the same CPU time (``--minutes``, process CPU time, so contention does not
shorten it) on two kinds of input:

- *pairs*: the model's refiner on real training images sent through 32 px (``input=refined``), or those
  images themselves (``input=through32``: the finisher instead of the refiner), with the real image as an L1
  target;
- *drawn*: the model's own images for training labels (its refined ones, or its first stage's for
  ``input=through32``), with no target, held to their input pooled 4 x 4 (an L1 ``anchor`` term) so that the
  finisher cannot change what they show;

L1 alone for the first ``warmup`` of the budget, then a hinge adversarial term (weight ``adv``) from a PatchGAN
discriminator that scores every 8x8 patch of both kinds against real training images. Then, on ``--n-ref``
held-out labels (``bench.harness.reference_set``, as ``bench_fidelity``'s), one table: the two-sample test at
64 px and pooled to 32 px (``bench.measures.two_sample_test``, 0.5 = real, ± standard error over 5 folds x
``--c2st-seeds``), edge acutance, and each evaluator's accuracy and share of cubes found, for the model's images
before and after.

**Rerun** (the table of docs/64px.md; about 2 hours of one core):

    OMP_NUM_THREADS=1 taskset -c 0 python -m studies.adversarial_finisher --data-root D --minutes 25 \\
        --pairs 3000 --drawn 512 --n-ref 500 \\
        --candidate after-refiner=input=refined --candidate instead-of-refiner=input=through32

A candidate (``--candidate`` or ``--row``) is ``LABEL=key=value,...`` with the keys of ``SPEC_DEFAULTS``. Needs
the real data and the shipped evaluators; draws with the shipped model (``--model``) at its default settings.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench import harness
from bench.measures import edge_acutance, two_sample_test
from lab6.evaluator import found_by_shape
from lab6.labels import decode, encode_many
from lab6.loading import load_pipeline
from lab6.proxy import upsample_like_official
from lab6.refiner import RefinedPipeline
from lab6.sampling import Sampling, generate
from studies.adversarial import hinge_discriminator_step

#: Every key of a candidate, with its default (and so its type).
SPEC_DEFAULTS = {"input": "refined", "channels": 48, "blocks": 4, "adv": 0.05, "anchor": 10.0, "warmup": 0.25,
                 "lr": 2e-4, "batch": 32}
#: How each key is read: its default's type; ``input`` one of the two kinds of pairs.
KEYS = {**{key: type(value) for key, value in SPEC_DEFAULTS.items()}, "input": harness.one_of("refined", "through32")}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, evaluators=True)
    harness.add_rows(parser, KEYS, "--candidate", help="a finisher to train; repeat")
    parser.add_argument("--model", default=None, help="the model whose images to finish (default: the shipped one)")
    parser.add_argument("--minutes", type=float, default=2.0, help="CPU minutes of training per candidate (default 2)")
    parser.add_argument("--pairs", type=int, default=3000, help="real training images made into pairs (default 3000)")
    parser.add_argument("--drawn", type=int, default=512, help="images drawn for training labels (default 512)")
    parser.add_argument("--n-ref", type=int, default=500, help="held-out labels drawn and scored (default 500)")
    parser.add_argument("--c2st-seeds", type=int, default=2, metavar="K", help="two-sample test seeds, pooled")
    args = parser.parse_args(argv)
    if args.c2st_seeds < 1:
        parser.error(f"--c2st-seeds {args.c2st_seeds}: give 1 or more")
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def run(args: argparse.Namespace) -> list[dict]:
    """The floor, the model's refined and first-stage images, then each candidate trained and its images measured."""
    reference = harness.reference_set(harness.data_root(args), args.n_ref)
    dataset, conditions = reference.dataset, reference.conditions
    train = reference.train[torch.randperm(len(reference.train), generator=torch.Generator().manual_seed(1))]
    pipe = load_pipeline(args.model)
    if not isinstance(pipe, RefinedPipeline):
        raise SystemExit("the model has no refiner: the candidates finish a refined model's images")
    pair_real, pair_labels = dataset.batch(train[:args.pairs])
    pair_real, pair_conditions = as_uint8(pair_real), [decode(row) for row in pair_labels]
    pair_refined = refine_real(pipe, pair_real, pair_conditions)
    drawn_refined, drawn_first = draw(pipe, [decode(row) for row in dataset.batch(train[-args.drawn:])[1]],
                                      "drawn for training labels")
    held_refined, held_first = draw(pipe, conditions, "drawn for held-out labels")
    evaluators = harness.evaluators(args)

    def row(label: str, images: torch.Tensor, image_conditions: list = conditions, **entries) -> dict:
        test = two_sample_test(reference.images, images, seeds=args.c2st_seeds)
        pooled = two_sample_test(F.avg_pool2d(reference.images, 2), F.avg_pool2d(images, 2), seeds=args.c2st_seeds)
        found = {"label": label, "c2st": test.accuracy, "c2st_se": test.standard_error, "log_loss": test.log_loss,
                 "c2st32": pooled.accuracy, "c2st32_se": pooled.standard_error,
                 "edge": float(edge_acutance(images).mean()), **entries}
        multi_hot = torch.tensor(encode_many(image_conditions))
        for e in evaluators:
            score = e.score(images, image_conditions)
            found[f"acc {e.name}"] = score.accuracy
            found[f"cube {e.name}"] = found_by_shape(score.probabilities, multi_hot)["cube"]
        harness.log(label, found)
        return found

    rows = [row("real images (the floor: other real images)", as_float(pair_real[:args.n_ref]),
                pair_conditions[:args.n_ref]),
            row("the model, refined (default)", as_float(held_refined)),
            row("the model, first stage", as_float(held_first))]
    for label, settings in args.row:
        spec = {**SPEC_DEFAULTS, **settings}
        refined = spec["input"] == "refined"
        pairs = (pair_refined if refined else as_uint8(upsample_like_official(as_float(pair_real), 32)), pair_real)
        finisher, counts = train_finisher(pairs, drawn_refined if refined else drawn_first, pair_real, spec,
                                          args.minutes * 60, label)
        with torch.no_grad():
            finished = torch.cat([finisher(as_float(chunk)).clamp(-1, 1)
                                  for chunk in (held_refined if refined else held_first).split(100)])
        rows.append(row(f"{label} (after the {'refiner' if refined else 'first stage'})", finished, **counts))
    return rows


class Finisher(nn.Module):
    """``images + correction(images)``, images in [-1, 1]: a body of residual blocks on 2x2 patches folded into
    channels (cheap), a full-resolution branch around it (single pixels), the last convolution at zero (an
    untrained finisher returns its input)."""

    def __init__(self, channels: int = 48, blocks: int = 4, full: int = 16):
        super().__init__()
        self.full_in = nn.Conv2d(3, full, 3, padding=1)
        self.fold = nn.Conv2d(4 * (full + 3), channels, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
                          nn.Conv2d(channels, channels, 3, padding=1)) for _ in range(blocks))
        self.unfold = nn.Conv2d(channels, 4 * full, 1)
        self.full_mix = nn.Conv2d(2 * full, full, 3, padding=1)
        self.full_out = nn.Conv2d(full, 3, 3, padding=1)
        nn.init.zeros_(self.full_out.weight)
        nn.init.zeros_(self.full_out.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        full = F.silu(self.full_in(images))
        h = self.fold(torch.cat([F.pixel_unshuffle(full, 2), F.pixel_unshuffle(images, 2)], dim=1))
        for block in self.blocks:
            h = h + block(h)
        unfolded = F.pixel_shuffle(self.unfold(F.silu(h)), 2)
        return images + self.full_out(F.silu(self.full_mix(torch.cat([full, unfolded], dim=1))))


def patch_discriminator(width: int = 32) -> nn.Sequential:
    """One logit per 8x8 patch (> 0: real): three stride-2 3x3 convolutions, each followed by a stride-1 one,
    leaky ReLU, no normalisation (batch norm would let it compare the images of a batch instead of judging each)."""
    channels = (3, width, 2 * width, 4 * width)
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                   nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Conv2d(channels[-1], 1, 3, padding=1))


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1)


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float in [-1, 1] -> uint8 0-255, as a PNG holds them (and a quarter of the memory)."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def draw(pipe, conditions: list, label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's refined images and its first stage's (upsampled), uint8, for ``conditions``, 64 at a time."""
    refined, first = [], []
    for start in tqdm(range(0, len(conditions), 64), desc=label, unit="batch"):
        result = generate(pipe, conditions[start:start + 64], Sampling(seed=start), progress=False)
        refined.append(as_uint8(result.images))
        first.append(as_uint8(result.first_stage))
    return torch.cat(refined), torch.cat(first)


def refine_real(pipe, real: torch.Tensor, conditions: list) -> torch.Tensor:
    """The model's refiner on real images (uint8) sent through 32 px, uint8."""
    out = []
    for start in tqdm(range(0, len(real), 64), desc="refiner on real images", unit="batch"):
        through_32 = upsample_like_official(as_float(real[start:start + 64]), 32)
        out.append(as_uint8(pipe.refine((through_32 + 1) / 2, conditions[start:start + 64], 20,
                                         torch.Generator().manual_seed(start)) * 2 - 1))
    return torch.cat(out)


def train_finisher(pairs: tuple[torch.Tensor, torch.Tensor], drawn: torch.Tensor, real: torch.Tensor, spec: dict,
                   cpu_seconds: float, label: str, seed: int = 0,
                   max_steps: int | None = None) -> tuple[Finisher, dict]:
    """Train one candidate for ``cpu_seconds`` of process CPU time (or ``max_steps``): (inputs, targets)
    ``pairs``, ``drawn`` images and ``real`` images for the discriminator, all uint8. Returns the finisher's EMA
    and the counts."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    finisher, disc = Finisher(spec["channels"], spec["blocks"]), patch_discriminator()
    ema = Finisher(spec["channels"], spec["blocks"]).requires_grad_(False)
    ema.load_state_dict(finisher.state_dict())
    opt = torch.optim.Adam(finisher.parameters(), lr=spec["lr"], betas=(0.5, 0.99))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=spec["lr"], betas=(0.5, 0.99))
    inputs, targets = pairs
    batch, start, steps, adversarial_steps, next_log = spec["batch"], time.process_time(), 0, 0, 60.0
    while (used := time.process_time() - start) < cpu_seconds and (max_steps is None or steps < max_steps):
        i = torch.randint(len(inputs), (batch,), generator=g)
        flip = (torch.rand(batch, generator=g) < 0.5).view(-1, 1, 1, 1)
        x, y = (torch.where(flip, t.flip(-1), t) for t in (as_float(inputs[i]), as_float(targets[i])))
        out = finisher(x)
        l1 = (out - y).abs().mean()
        loss = l1
        adversarial = used >= spec["warmup"] * cpu_seconds
        if adversarial:
            own = as_float(drawn[torch.randint(len(drawn), (batch,), generator=g)])
            own_out = finisher(own)
            anchor = (F.avg_pool2d(own_out, 4) - F.avg_pool2d(own, 4)).abs().mean()
            fakes = torch.cat([out, own_out])
            loss = loss + spec["anchor"] * anchor - spec["adv"] * disc(fakes).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + steps) / (10 + steps))
            for e, p in zip(ema.parameters(), finisher.parameters()):
                e.lerp_(p, 1 - decay)
        if adversarial:
            reals = as_float(real[torch.randint(len(real), (2 * batch,), generator=g)])
            d_loss = hinge_discriminator_step(disc, opt_disc, reals, fakes)
            adversarial_steps += 1
        steps += 1
        if used >= next_log:
            next_log += 60.0
            extra = f", anchor {anchor.item():.4f}, d_loss {d_loss.item():.3f}" if adversarial else ""
            print(f"  {label}: {used / 60:.1f} CPU-min, step {steps}, L1 {l1.item():.4f}{extra}", flush=True)
    return ema.eval(), {"steps": steps, "adversarial_steps": adversarial_steps}


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """One row per image set: the two-sample test at 64 and 32 px, edge acutance, accuracy and cubes found."""
    names = [key[4:] for key in rows[0] if key.startswith("acc ")]
    columns = {"images": lambda row: row["label"],
               "two-sample test (0.5 = real)": lambda row: f"{row['c2st']:.3f} ± {row['c2st_se']:.3f}",
               "its log-loss": lambda row: f"{row['log_loss']:.3f}",
               "pooled to 32 px": lambda row: f"{row['c2st32']:.3f} ± {row['c2st32_se']:.3f}",
               "edge acutance": lambda row: f"{row['edge']:.3f}",
               **{f"accuracy ({n})": lambda row, n=n: f"{row[f'acc {n}']:.3f}" for n in names},
               **{f"cubes found ({n})": lambda row, n=n: f"{row[f'cube {n}']:.3f}" for n in names},
               "steps (adversarial)": lambda row: (f"{row['steps']:,} ({row['adversarial_steps']:,})" if "steps" in row
                                                   else "")}
    caption = (f"{args.n_ref} held-out labels; two-sample test against their real images, ± standard error over 5 "
               f"folds x {args.c2st_seeds} seed(s); {args.minutes:g} CPU-minutes of training per candidate, "
               f"{args.pairs} pairs, {args.drawn} drawn; {torch.get_num_threads()} thread(s)")
    return {"table": harness.Table(caption, harness.markdown_table(rows, columns))}


if __name__ == "__main__":
    main()

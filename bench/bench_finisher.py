"""Can an adversarial 64-px pass make a model's images look real? A one-pass finisher per CPU-minute.

The two-sample test tells the shipped model's images from real ones every time at 64 px, and does so even for
its refiner given real images sent through 32 px (``bench_fidelity.py --refiner-alone``): the 64-px stage is
where realism is lost. The field's tool for the finest scale is an adversarial term (ESRGAN; the decoders of
latent diffusion). Each candidate here is a small residual CNN (``Finisher``) that runs once on a model's
64-px images, trained for the same CPU time (``--minutes``, process CPU time, so contention does not shorten
it) on two kinds of input:

- *pairs*: the model's refiner on real training images sent through 32 px (``input=refined``), or those
  images themselves (``input=through32``: the finisher instead of the refiner), with the real image as an L1
  target;
- *drawn*: the model's own images for training labels (its refined ones, or its first stage's for
  ``input=through32``), with no target, held to their input pooled 4 x 4 (an L1 ``anchor`` term) so that the
  finisher cannot change what they show;

L1 alone for the first ``warmup`` of the budget, then a hinge adversarial term (weight ``adv``) from a PatchGAN
discriminator that scores every 8x8 patch of both kinds against real training images. Then, on ``--n-ref``
held-out labels (``bench_fidelity.py``'s reference set), one table: the two-sample test at 64 px and pooled to
32 px (``lab6.fidelity.two_sample_test``, 0.5 = real, ± standard error over 5 folds x ``--c2st-seeds``), edge
acutance, and both proxies' accuracy and share of cubes found, for the model's images before and after.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/bench_finisher.py --data-root ../shared/iclevr-reference \\
        --minutes 30 --candidate after-refiner=input=refined

A candidate is ``LABEL=key=value,...`` with the keys of ``SPEC_DEFAULTS``. Needs the real data and the shipped
evaluators; draws with the shipped model (``--model``) at its default settings.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import training_bench
from lab6.data import ICLEVRDataset
from lab6.evaluator import found_by_shape, load_evaluators
from lab6.fidelity import edge_acutance, two_sample_test
from lab6.labels import decode, encode_many
from lab6.pipeline import load_pipeline
from lab6.proxy import split_holdout, upsample_like_official
from lab6.sampling import generate

#: Every key of a candidate, with its default.
SPEC_DEFAULTS = {"input": "refined", "channels": 48, "blocks": 4, "adv": 0.05, "anchor": 10.0, "warmup": 0.25,
                 "lr": 2e-4, "batch": 32}
WORD_KEYS, INT_KEYS = {"input"}, {"channels", "blocks", "batch"}
INPUTS = ("refined", "through32")


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


def parse_candidate(text: str) -> tuple[str, dict]:
    """``"after-refiner=input=refined,adv=0.1"`` -> ``("after-refiner", {...SPEC_DEFAULTS, adv: 0.1})``."""
    label, spec = training_bench.parse_candidate(text, SPEC_DEFAULTS, INT_KEYS, WORD_KEYS)
    if spec["input"] not in INPUTS:
        raise argparse.ArgumentTypeError(f"bad input {spec['input']!r} in {text!r}: one of {', '.join(INPUTS)}")
    return label, spec


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
        result = generate(pipe, conditions[start:start + 64], seed=start, progress=False)
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
            d_loss = training_bench.hinge_discriminator_step(disc, opt_disc, reals, fakes)
            adversarial_steps += 1
        steps += 1
        if used >= next_log:
            next_log += 60.0
            extra = f", anchor {anchor.item():.4f}, d_loss {d_loss.item():.3f}" if adversarial else ""
            print(f"  {label}: {used / 60:.1f} CPU-min, step {steps}, L1 {l1.item():.4f}{extra}", flush=True)
    return ema.eval(), {"steps": steps, "adversarial_steps": adversarial_steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="the real data (course layout)")
    parser.add_argument("--model", default=None, help="the model whose images to finish (default: the shipped one)")
    parser.add_argument("--candidate", type=parse_candidate, action="append", default=[],
                        metavar="LABEL=key=value,...")
    parser.add_argument("--minutes", type=float, default=2.0, help="CPU minutes of training per candidate (default 2)")
    parser.add_argument("--pairs", type=int, default=3000, help="real training images made into pairs (default 3000)")
    parser.add_argument("--drawn", type=int, default=512, help="images drawn for training labels (default 512)")
    parser.add_argument("--n-ref", type=int, default=500, help="held-out labels drawn and scored (default 500)")
    parser.add_argument("--c2st-seeds", type=int, default=2, metavar="K", help="two-sample test seeds, pooled")
    args = parser.parse_args()
    if args.c2st_seeds < 1:
        raise SystemExit(f"--c2st-seeds {args.c2st_seeds}: give 1 or more")

    dataset = ICLEVRDataset(args.data_root, image_size=64, progress=False)
    held, train = split_holdout(len(dataset))
    reference_idx = held[torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[:args.n_ref]]
    train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))]
    pipe = load_pipeline(args.model)
    if pipe.refiner is None:
        raise SystemExit("the model has no refiner: the candidates finish a refined model's images")
    reference, reference_labels = dataset.batch(reference_idx)
    reference_conditions = [decode(row) for row in reference_labels]
    pair_real, pair_labels = dataset.batch(train[:args.pairs])
    pair_real, pair_conditions = as_uint8(pair_real), [decode(row) for row in pair_labels]
    pair_refined = refine_real(pipe, pair_real, pair_conditions)
    drawn_refined, drawn_first = draw(pipe, [decode(row) for row in dataset.batch(train[-args.drawn:])[1]],
                                      "drawn for training labels")
    held_refined, held_first = draw(pipe, reference_conditions, "drawn for held-out labels")
    evaluators = load_evaluators(None, None)
    rows = []

    def add_row(label: str, images: torch.Tensor, conditions: list = reference_conditions, **entries) -> None:
        test = two_sample_test(reference, images, seeds=args.c2st_seeds)
        pooled = two_sample_test(F.avg_pool2d(reference, 2), F.avg_pool2d(images, 2), seeds=args.c2st_seeds)
        row = {"label": label, "c2st": test.accuracy, "c2st_se": test.standard_error, "log_loss": test.log_loss,
               "c2st32": pooled.accuracy, "c2st32_se": pooled.standard_error,
               "edge": float(edge_acutance(images).mean()), **entries}
        for e in evaluators:
            score = e.score(images, conditions)
            row[f"acc {e.name}"] = score.accuracy
            row[f"cube {e.name}"] = found_by_shape(score.probabilities, torch.tensor(encode_many(conditions)))["cube"]
        rows.append(row)
        print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)

    add_row("real images (the floor: other real images)", as_float(pair_real[:args.n_ref]),
            pair_conditions[:args.n_ref])
    add_row("the model, refined (default)", as_float(held_refined))
    add_row("the model, first stage", as_float(held_first))
    for label, spec in args.candidate:
        refined = spec["input"] == "refined"
        pairs = (pair_refined if refined else as_uint8(upsample_like_official(as_float(pair_real), 32)), pair_real)
        finisher, counts = train_finisher(pairs, drawn_refined if refined else drawn_first, pair_real, spec,
                                          args.minutes * 60, label)
        with torch.no_grad():
            finished = torch.cat([finisher(as_float(chunk)).clamp(-1, 1)
                                  for chunk in (held_refined if refined else held_first).split(100)])
        add_row(f"{label} (after the {'refiner' if refined else 'first stage'})", finished, **counts)

    names = [e.name for e in evaluators]
    print(f"\n{args.n_ref} held-out labels; two-sample test against their real images, ± standard error over 5 folds"
          f" x {args.c2st_seeds} seed(s); {args.minutes:g} CPU-minutes of training per candidate, {args.pairs} pairs, "
          f"{args.drawn} drawn; {torch.get_num_threads()} thread(s)\n")
    columns = ["images", "two-sample test (0.5 = real)", "its log-loss", "pooled to 32 px", "edge acutance",
               *(f"accuracy ({n})" for n in names), *(f"cubes found ({n})" for n in names), "steps (adversarial)"]
    print("| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|")
    for row in rows:
        steps = f"{row['steps']:,} ({row['adversarial_steps']:,})" if "steps" in row else ""
        print(f"| {row['label']} | {row['c2st']:.3f} ± {row['c2st_se']:.3f} | {row['log_loss']:.3f} | "
              f"{row['c2st32']:.3f} ± {row['c2st32_se']:.3f} | {row['edge']:.3f} | "
              + " | ".join(f"{row[f'acc {n}']:.3f}" for n in names) + " | "
              + " | ".join(f"{row[f'cube {n}']:.3f}" for n in names) + f" | {steps} |")


if __name__ == "__main__":
    main()

"""Training steps per second: ways to run the same optimiser step faster on this CPU, measured side by side.

Each row trains the recipe's network (loss, backward, AdamW, EMA: what ``lab6.train.Trainer.optimiser_step`` does)
on random images of the recipe's size from the same weights. The rows take turns, a few seconds each, for
``--rounds`` rounds, so a machine whose speed drifts slows every row alike; the table gives each row's images/s
(mean and range over the rounds) and its ratio to the eager step. ``torch.compile`` rows also give the seconds
their first steps took (compiling).

    OMP_NUM_THREADS=1 taskset -c 0 python -m bench.bench_train_step --preset cpu --rounds 5 --seconds 10
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from diffusers.training_utils import EMAModel

from bench import harness
from lab6.diffusion import training_loss
from lab6.presets import preset

#: What each row changes from the eager step.
VARIANTS = {
    "eager": {},
    "channels-last": {"channels_last": True},
    "AdamW foreach": {"optimizer": {"foreach": True}},
    "AdamW fused": {"optimizer": {"fused": True}},
    "EMA foreach": {"ema_foreach": True},
    "bf16 autocast": {"bf16": True},
    "compile": {"compile": True},
    "compile + channels-last + fused + EMA foreach": {"compile": True, "channels_last": True,
                                                      "optimizer": {"fused": True}, "ema_foreach": True},
    "compile + bf16 autocast": {"compile": True, "bf16": True},
}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, data=False)
    parser.add_argument("--preset", default="cpu", help="the recipe whose network is trained (default cpu)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: the recipe's)")
    parser.add_argument("--rounds", type=int, default=5, help="turns each row takes (default 5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per row per round (default 10)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="ROW",
                        help=f"rows to measure (default all: {', '.join(VARIANTS)})")
    args = parser.parse_args(argv)
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


class Stepper:
    """One row: its own copy of the network, optimiser and EMA, and the step it times."""

    def __init__(self, name: str, cfg, model: torch.nn.Module, batch: int, options: dict):
        self.name, self.cfg, self.options = name, cfg, options
        self.model = copy.deepcopy(model)
        memory = torch.channels_last if options.get("channels_last") else torch.contiguous_format
        self.model.to(memory_format=memory)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, **options.get("optimizer", {}))
        self.ema = EMAModel(self.model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4,
                            foreach=options.get("ema_foreach", False))
        self.forward = torch.compile(self.model) if options.get("compile") else self.model
        self.schedule = cfg.noise_scheduler()
        size = cfg.image_size
        self.images = (torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
                       ).contiguous(memory_format=memory)
        self.labels = torch.zeros(batch, 24)
        self.labels[:, 1] = self.labels[:, 9] = 1
        self.step_index, self.times, self.first_seconds = 0, [], None

    def step(self) -> None:
        cfg, generator = self.cfg, torch.Generator().manual_seed(self.step_index)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.options.get("bf16", False)):
            loss = training_loss(self.forward, self.images, self.labels, self.schedule, generator=generator,
                                 cond_dropout=cfg.cond_dropout, min_snr_gamma=cfg.min_snr_gamma or None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.model.parameters())
        self.step_index += 1

    def warm_up(self) -> None:
        """The first steps, untimed in the rate: where torch.compile compiles (forward and backward)."""
        start = time.perf_counter()
        for _ in range(2):
            self.step()
        self.first_seconds = time.perf_counter() - start

    def run_for(self, seconds: float) -> None:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or done < 2:
            self.step()
            done += 1
        self.times.append(done * len(self.images) / (time.perf_counter() - start))


def run(args: argparse.Namespace) -> list[dict]:
    cfg = preset(args.preset)
    batch = args.batch or cfg.batch_size
    torch.manual_seed(cfg.seed)
    model = cfg.build_model()
    steppers = [Stepper(name, cfg, model, batch, VARIANTS[name]) for name in args.variants]
    for stepper in steppers:
        stepper.warm_up()
    for _ in range(args.rounds):  # the rows take turns, so drift in the machine's speed hits each alike
        for stepper in steppers:
            stepper.run_for(args.seconds)
    return [{"row": s.name, "preset": args.preset, "batch": batch, "img_per_s": sum(s.times) / len(s.times),
             "low": min(s.times), "high": max(s.times), "first_steps_s": s.first_seconds} for s in steppers]


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    eager = next((row for row in rows if row["row"] == "eager"), rows[0])
    columns = {"step": lambda row: row["row"],
               "images/s (mean, low-high)": lambda row: f"{row['img_per_s']:.1f} ({row['low']:.1f}-{row['high']:.1f})",
               f"vs {eager['row']}": lambda row: f"{row['img_per_s'] / eager['img_per_s']:.2f}x",
               "first 2 steps (s)": lambda row: f"{row['first_steps_s']:.1f}"}
    caption = (f"preset {rows[0]['preset']}, batch {rows[0]['batch']}, {torch.get_num_threads()} thread(s), "
               f"{args.rounds} rounds of {args.seconds:g} s per row, taken in turns")
    return {"table": harness.Table(caption, harness.markdown_table(rows, columns))}


if __name__ == "__main__":
    main()

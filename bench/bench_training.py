"""Training throughput: the CPU presets against the seeds' `paper` configuration, measured side by side.

Prints, per preset: parameters, FLOPs per training image (forward + backward, PyTorch's flop counter),
images/s, achieved GFLOP/s, and that as a fraction of this machine's peak, where "peak" is the measured
rate of a large fp32 matrix multiply (the best this BLAS does on these cores).

    python -m bench.bench_training [--batch 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import harness
from lab6.diffusion import training_loss
from lab6.model import ConditionalUNet
from lab6.presets import preset

PRESETS = ("cpu", "cpu-add", "paper")


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, data=False)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--paper-batch", type=int, default=4, help="the paper preset is ~50x slower: a small batch")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def run(args: argparse.Namespace) -> list[dict]:
    """One row per preset, each with this machine's matmul rate to compare against."""
    peak = matmul_peak_gflops()
    return [{**measure(name, args.paper_batch if name == "paper" else args.batch, args.seconds), "peak_gflop_s": peak}
            for name in PRESETS]


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n fp32 matrix multiply, after one untimed."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(name: str, batch: int, seconds: float) -> dict:
    """Train preset ``name``'s network on random images for ``seconds`` (at least 2 steps, after one untimed)."""
    cfg = preset(name)
    torch.manual_seed(0)
    model = ConditionalUNet(**cfg.model_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = cfg.noise_scheduler()
    images = torch.rand(batch, 3, cfg.image_size, cfg.image_size) * 2 - 1
    labels = torch.zeros(batch, 24)
    labels[:, 1] = 1

    def step():
        loss = training_loss(model, images, labels, scheduler, min_snr_gamma=cfg.min_snr_gamma or None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        loss = training_loss(model, images, labels, scheduler)
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    flops_per_image = counter.get_total_flops() / batch
    step()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 2:
        step()
        done += 1
    rate = done * batch / (time.perf_counter() - start)
    return {"preset": name, "size": cfg.image_size, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflop_per_img": flops_per_image / 1e9, "img_per_s": rate, "gflop_s": rate * flops_per_image / 1e9}


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """Each preset's cost and rate, against the matmul rate and against the paper preset."""
    paper = next(row for row in rows if row["preset"] == "paper")
    columns = {"preset": lambda row: row["preset"], "size": lambda row: str(row["size"]),
               "params (M)": lambda row: f"{row['params_M']:.1f}",
               "GFLOP / train image": lambda row: f"{row['gflop_per_img']:.2f}",
               "images/s": lambda row: f"{row['img_per_s']:.2f}", "GFLOP/s": lambda row: f"{row['gflop_s']:.1f}",
               "% of peak": lambda row: f"{100 * row['gflop_s'] / row['peak_gflop_s']:.0f}%",
               "speed vs paper": lambda row: f"{row['img_per_s'] / paper['img_per_s']:.1f}x"}
    caption = f"threads: {torch.get_num_threads()}, fp32 matmul peak: {rows[0]['peak_gflop_s']:.1f} GFLOP/s"
    return {"table": harness.Table(caption, harness.markdown_table(rows, columns))}


if __name__ == "__main__":
    main()

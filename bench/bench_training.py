"""Training throughput: the CPU presets against the seeds' `paper` configuration, measured side by side.

Prints, per preset: parameters, FLOPs per training image (forward + backward, PyTorch's flop counter),
images/s, achieved GFLOP/s, and that as a fraction of this machine's peak, where "peak" is the measured
rate of a large fp32 matrix multiply (the best this BLAS does on these cores).

    python bench/bench_training.py [--batch 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lab6.config import preset
from lab6.diffusion import training_loss
from lab6.model import ConditionalUNet


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(name: str, batch: int, seconds: float) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--paper-batch", type=int, default=4, help="the paper preset is ~50x slower: a small batch")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    rows = [measure("cpu", args.batch, args.seconds), measure("cpu-add", args.batch, args.seconds),
            measure("paper", args.paper_batch, args.seconds)]
    paper = rows[-1]
    print(f"threads: {torch.get_num_threads()}, fp32 matmul peak: {peak:.1f} GFLOP/s\n")
    print("| preset | size | params (M) | GFLOP / train image | images/s | GFLOP/s | % of peak | speed vs paper |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['preset']} | {r['size']} | {r['params_M']:.1f} | {r['gflop_per_img']:.2f} "
              f"| {r['img_per_s']:.2f} | {r['gflop_s']:.1f} | {100 * r['gflop_s'] / peak:.0f}% "
              f"| {r['img_per_s'] / paper['img_per_s']:.1f}x |")


if __name__ == "__main__":
    main()

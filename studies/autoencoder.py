"""Can a latent first stage look real? No, not on this machine's budget: no autoencoder's reconstructions pass.

**Answer** (docs/64px.md#latent-diffusion). After 20 CPU-minutes of training on one thread (about one pass over
the training images), no decoder's reconstructions of 1,000 held-out real images pass the classifier two-sample
test against 1,000 other real ones: f2c4-gan (f = 2, 4 channels, adversarial) scores 0.993 ± 0.003, f4c4-gan and
the L1-only f2c4-l1 1.000 ± 0.000, as do real images sent through 32 px (the floor: 0.512 ± 0.013). The L1-only
decoder reconstructs more exactly than the 32-px round trip by PSNR (L1 1.77 grey levels and 38.2 dB, against
the round trip's 1.69 and 37.1) and is still told apart every time: red objects come out magenta, cube corners
rounded, small objects lost. The adaptive weight switched the adversarial term off within minutes (0.12 at its
start, about 0.001 from minute 12): without a perceptual loss, whose pretrained weights this machine cannot
fetch, that rule starves it. A fixed weight (0.1 or 0.5, 33 CPU-minutes) keeps the term on and costs the
reconstructions 9-10 dB of PSNR (27.1 and 28.0 dB) without passing either (1.000 ± 0.000). On this budget an
autoencoder's decoder is no nearer real than the 32-px round trip; a latent diffusion model is not worth its
training run until one comes clearly below about 0.9 (docs/open-questions.md).

**Question.** A latent diffusion model (Rombach et al. 2022) can draw no better than its decoder: if the
reconstructions of real images are told from real ones, so will every image drawn in that latent. Each
candidate, a small diffusers ``AutoencoderKL`` (a ``ModelMixin``: a latent pipeline registers it as its
``vae``), trains on the course's training images for the same CPU time (``--minutes``, process CPU time, so
contention does not shorten it) with L1 + a tiny KL term and, after a warm-up, a PatchGAN hinge adversarial term
(a small conv discriminator with the adaptive weight of taming-transformers / LDM). Then, on ``--n-ref`` held-out
real images (``bench.harness.reference_set``, never trained on; the same reference images as
``bench/bench_fidelity.py``), one table:

- the classifier two-sample test (``bench.measures.two_sample_test``) of the reconstructions against N other
  real images, ± standard error over 5 folds (x ``--c2st-seeds``); 0.5 = indistinguishable. The floor row sends
  the reference through unchanged, the baseline row through 32 px (bilinear down and up, what the 32-px first
  stage can at best give a refiner);
- L1 (0-255 grey levels) and PSNR (dB, 8-bit images) of the reconstructions;
- latent shape, parameters (autoencoder / discriminator), CPU seconds and images seen in training, and
  encode + decode milliseconds per image (posterior mode, batches of 50, on this process's threads).

**Rerun** (the table of docs/64px.md; each command about an hour of one core):

    OMP_NUM_THREADS=1 taskset -c 0 python -m studies.autoencoder --data-root D --minutes 20 --n-ref 1000 \\
        --candidate f2c4-gan=down=1,latent=4,gan=0.5,attn=0 --candidate f4c4-gan=down=2,latent=4,gan=0.5 \\
        --candidate f2c4-l1=down=1,latent=4,attn=0
    OMP_NUM_THREADS=1 taskset -c 0 python -m studies.autoencoder --data-root D --minutes 33 --n-ref 1000 \\
        --candidate f2c4-ganfix=down=1,latent=4,gan=0.1,adapt=0,attn=0     # and gan=0.5 on the other core

A candidate (``--candidate`` or ``--row``) is ``LABEL=key=value,...`` with the keys of ``SPEC_DEFAULTS``: down
(downsamplings: latent side 64 / 2^down), latent (channels), width (first block's channels, doubled per
downsampling), lpb (layers per block), attn (the mid block's self-attention, 1/0), kl (KL weight), gan
(adversarial weight; 0: L1 + KL only), adapt (1: the weight is ``gan`` x the adaptive ratio of gradient norms at
the decoder's last layer; 0: fixed), warmup (share of the budget before the adversarial term starts), disc
(discriminator width), lr, batch. ``--save FOLDER`` keeps each trained autoencoder (``save_pretrained``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from bench import harness
from bench.measures import two_sample_test
from lab6.proxy import upsample_like_official
from studies.adversarial import hinge_discriminator_step

#: Every key of a candidate, with its default (and so its type).
SPEC_DEFAULTS = {"down": 1, "latent": 4, "width": 32, "lpb": 1, "attn": 1, "kl": 1e-6, "gan": 0.0, "adapt": 1,
                 "warmup": 0.3, "disc": 32, "lr": 4e-4, "batch": 16}


def whole(low: int, step: int = 1):
    """A reader of whole numbers of at least ``low`` that ``step`` divides."""
    def read(text: str) -> int:
        value = int(text)
        if value < low or value % step:
            raise ValueError(f"a whole number >= {low}" + (f", a multiple of {step}" if step > 1 else ""))
        return value
    return read


#: How each key is read: its default's type, and the shapes an ``AutoencoderKL`` can take (group norm of 32 groups).
KEYS = {**{key: type(value) for key, value in SPEC_DEFAULTS.items()}, "down": whole(0), "latent": whole(1),
        "width": whole(32, step=32)}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__)
    harness.add_rows(parser, KEYS, "--candidate", help="an autoencoder to train; repeat")
    parser.add_argument("--minutes", type=float, default=2.0, help="CPU minutes of training per candidate (default 2)")
    parser.add_argument("--n-ref", type=int, default=1000, help="held-out images reconstructed (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="which held-out images make the reference set")
    parser.add_argument("--c2st-seeds", type=whole(1), default=1, metavar="K", help="two-sample test seeds, pooled")
    parser.add_argument("--save", type=Path, default=None, metavar="FOLDER",
                        help="save each trained autoencoder there (save_pretrained, FOLDER/LABEL); never the repo")
    args = parser.parse_args(argv)
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def run(args: argparse.Namespace) -> list[dict]:
    """The floor, the 32-px round trip, then each candidate trained and its reconstructions measured."""
    reference = harness.reference_set(harness.data_root(args), args.n_ref, args.seed)
    train_images = reference.dataset.images[reference.train]
    print(f"{len(train_images)} training images, {args.n_ref} held-out references, "
          f"{torch.get_num_threads()} thread(s)", flush=True)

    def row(label: str, images: torch.Tensor, **entries) -> dict:
        test = two_sample_test(reference.others, images, seeds=args.c2st_seeds)
        found = {"label": label, "c2st": test.accuracy, "c2st_se": test.standard_error, **entries}
        if images is not reference.images:
            found["l1"], found["psnr"] = l1_psnr(reference.images, images)
        harness.log(label, found)
        return found

    rows = [row("real images (the floor: N other real images)", reference.images),
            row("real images through 32 px (bilinear down and up)", upsample_like_official(reference.images, 32),
                latent=(3, 32, 32))]
    for label, settings in args.row:
        trained = train_autoencoder(train_images, {**SPEC_DEFAULTS, **settings}, args.minutes * 60, label=label)
        vae = trained["vae"]
        if args.save:
            vae.save_pretrained(args.save / label)
        recon, ms, shape = reconstruct(vae, reference.images)
        rows.append(row(label, recon, latent=shape, ms=ms, params=sum(p.numel() for p in vae.parameters()),
                        disc_params=sum(p.numel() for p in trained["disc"].parameters()),
                        cpu_seconds=trained["cpu_seconds"], images_seen=trained["images_seen"]))
        print(f"  {label}: {trained['steps']} steps ({trained['gan_steps']} adversarial), "
              f"{trained['wall_seconds']:.0f} s wall", flush=True)
    return rows


def build_autoencoder(spec: dict) -> AutoencoderKL:
    """A small ``AutoencoderKL``: ``down`` + 1 blocks of ``width`` x 1, 2, 4... channels, so a 64-px image becomes
    a (``latent``, 64 / 2^down, 64 / 2^down) latent."""
    widths = tuple(spec["width"] * 2 ** i for i in range(spec["down"] + 1))
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(widths),
                         up_block_types=("UpDecoderBlock2D",) * len(widths), block_out_channels=widths,
                         layers_per_block=spec["lpb"], latent_channels=spec["latent"], sample_size=64,
                         mid_block_add_attention=bool(spec["attn"]))


def patch_discriminator(width: int = 32, layers: int = 3) -> nn.Sequential:
    """PatchGAN (Isola et al. 2017, as taming-transformers' ``NLayerDiscriminator``): 4x4 convolutions, ``layers``
    of stride 2, batch norm and leaky ReLU, one logit per overlapping patch."""
    channels = [3] + [width * min(2 ** i, 8) for i in range(layers + 1)]
    modules: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
    for i in range(1, layers + 1):
        stride = 2 if i < layers else 1
        modules += [nn.Conv2d(channels[i], channels[i + 1], 4, stride, 1, bias=False),
                    nn.BatchNorm2d(channels[i + 1]), nn.LeakyReLU(0.2)]
    return nn.Sequential(*modules, nn.Conv2d(channels[-1], 1, 4, 1, 1))


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """taming-transformers' balance: the ratio of the two losses' gradient norms at the decoder's last layer."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0, 1e4).detach()


def train_autoencoder(images: torch.Tensor, spec: dict, cpu_seconds: float, *, seed: int = 0,
                      max_steps: int | None = None, log_every: float = 60.0, label: str = "") -> dict:
    """Train one candidate on ``images`` (uint8, (N, 3, 64, 64)) for ``cpu_seconds`` of process CPU time (or
    ``max_steps``), random batches with horizontal flips.

    Returns:
        ``{"vae", "disc", "steps", "images_seen", "cpu_seconds", "wall_seconds", "gan_steps"}``.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    vae, disc = build_autoencoder(spec), patch_discriminator(spec["disc"])
    opt = torch.optim.Adam(vae.parameters(), lr=spec["lr"], betas=(0.5, 0.9))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=spec["lr"], betas=(0.5, 0.9))
    last_layer = vae.decoder.conv_out.weight
    values_per_image = images[0].numel()
    gan_start = spec["warmup"] * cpu_seconds if spec["gan"] > 0 else math.inf
    start_cpu, start_wall, next_log = time.process_time(), time.perf_counter(), log_every
    steps = gan_steps = 0
    vae.train()
    while True:
        used = time.process_time() - start_cpu
        if (max_steps is not None and steps >= max_steps) or (max_steps is None and used >= cpu_seconds):
            break
        batch = torch.randint(len(images), (spec["batch"],), generator=generator)
        x = images[batch].float().div_(127.5).sub_(1)
        flip = torch.rand(len(batch), generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator)).sample
        rec_loss = (recon - x).abs().mean()
        loss = rec_loss + spec["kl"] * posterior.kl().mean() / values_per_image
        adversarial = used >= gan_start or (max_steps is not None and spec["gan"] > 0)
        if adversarial:
            gan_loss = -disc(recon).mean()
            weight = spec["gan"] * (adaptive_weight(rec_loss, gan_loss, last_layer) if spec["adapt"] else 1.0)
            loss = loss + weight * gan_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if adversarial:
            d_loss = hinge_discriminator_step(disc, opt_disc, x, recon)
            gan_steps += 1
        steps += 1
        if used >= next_log:
            next_log += log_every
            extra = f", gan weight {float(weight):.3f}, d_loss {d_loss.item():.3f}" if adversarial else ""
            print(f"  {label}: {used / 60:.1f} CPU-min, step {steps}, L1 {rec_loss.item():.4f}{extra}", flush=True)
    return {"vae": vae.eval(), "disc": disc.eval(), "steps": steps, "images_seen": steps * spec["batch"],
            "gan_steps": gan_steps, "cpu_seconds": time.process_time() - start_cpu,
            "wall_seconds": time.perf_counter() - start_wall}


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor, batch: int = 50) -> tuple[torch.Tensor, float, tuple]:
    """Encode (posterior mode) and decode ``images`` in [-1, 1]: the reconstructions clamped to [-1, 1], wall
    milliseconds per image, and the latent shape of one image."""
    out, shape = [], ()
    start = time.perf_counter()
    for chunk in images.split(batch):
        latent = vae.encode(chunk).latent_dist.mode()
        shape = tuple(latent.shape[1:])
        out.append(vae.decode(latent).sample.clamp(-1, 1))
    return torch.cat(out), 1000 * (time.perf_counter() - start) / len(images), shape


def l1_psnr(real: torch.Tensor, images: torch.Tensor) -> tuple[float, float]:
    """Mean absolute error (0-255 levels) and mean PSNR (dB, peak 255) of 8-bit ``images`` against ``real``."""
    a, b = (((t.clamp(-1, 1) + 1) * 127.5).round() for t in (real, images))
    error = (a - b).abs().flatten(1)
    mse = error.square().mean(dim=1).clamp(min=1e-10)
    return float(error.mean()), float((10 * torch.log10(255.0 ** 2 / mse)).mean())


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """One row per image set, blank cells where a column does not apply."""
    def cell(key: str, form: str):
        return lambda row: format(row[key], form) if key in row else ""

    columns = {"images": lambda row: row["label"],
               "two-sample test (0.5 = real)": lambda row: f"{row['c2st']:.3f} ± {row['c2st_se']:.3f}",
               "L1 (0-255)": cell("l1", ".2f"), "PSNR (dB)": cell("psnr", ".1f"),
               "latent": lambda row: "x".join(map(str, row["latent"])) if "latent" in row else "",
               "parameters (AE / D)": lambda row: (f"{row['params']:,} / {row['disc_params']:,}" if "params" in row
                                                   else ""),
               "CPU s": cell("cpu_seconds", ".0f"), "images seen": cell("images_seen", ","),
               "ms / image": cell("ms", ".1f")}
    caption = (f"{args.n_ref} held-out images reconstructed; two-sample test against {args.n_ref} other real images, "
               f"± standard error over 5 folds x {args.c2st_seeds} seed(s); {args.minutes:g} CPU-minutes of training "
               f"per candidate; {torch.get_num_threads()} thread(s)")
    return {"table": harness.Table(caption, harness.markdown_table(rows, columns))}


if __name__ == "__main__":
    main()

"""What the benchmarks that train a network per candidate (``bench_autoencoder.py``, ``bench_finisher.py``) share:
their ``LABEL=key=value,...`` candidates, parsed over a table of defaults with every key and value checked, and
the discriminator's step of an adversarial term."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def parse_candidate(text: str, defaults: dict, int_keys: set[str],
                    word_keys: set[str] = frozenset()) -> tuple[str, dict]:
    """``"label=a=1,b=0.5"`` -> ``("label", {**defaults, "a": 1, "b": 0.5})``: ints for ``int_keys``, text for
    ``word_keys``, floats for the rest. An unknown key or a value that is not a number is refused by name."""
    label, sep, rest = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"bad candidate {text!r}: write LABEL=key=value,...")
    spec = dict(defaults)
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise argparse.ArgumentTypeError(f"bad option {item!r} in {text!r}: write key=value with a key of "
                                             f"{', '.join(defaults)}")
        try:
            spec[key] = value if key in word_keys else int(value) if key in int_keys else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad value {value!r} for {key} in {text!r}: a number") from None
    return label, spec


def hinge_discriminator_step(discriminator: torch.nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor,
                             fake: torch.Tensor) -> torch.Tensor:
    """One step of the discriminator on the hinge loss (Lim and Ye 2017, as taming-transformers): its logits
    pushed above 1 on ``real`` images and below -1 on ``fake`` ones (detached: the generator is not trained
    here). Returns the loss, the two terms' mean (1 at chance, 0 once every image is told apart by a margin)."""
    loss = 0.5 * (F.relu(1 - discriminator(real)).mean() + F.relu(1 + discriminator(fake.detach())).mean())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()

"""The adversarial piece the studies that train a network per candidate share: the discriminator's step."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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

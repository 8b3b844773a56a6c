"""What a training run counts as it goes: its step and clock (checkpointed, so a resumed run goes on from them) and
the loss and images since the last row of metrics.csv."""

from __future__ import annotations

import time


class TrainState:
    """What the loop itself must remember across a resume (checkpointed through accelerate)."""

    def __init__(self):
        self.step = 0
        self.elapsed = 0.0  # seconds of training, summed over resumes

    def state_dict(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])

    def minutes_left(self, spent: float) -> float:
        """Minutes to the end of the budget at this pace, ``spent`` being the fraction of it used so far."""
        return self.elapsed / 60 * (1 - spent) / max(spent, 1e-9)


class LossWindow:
    """The loss and images since the last metrics row: its mean loss and images per second."""

    def __init__(self):
        self.loss_sum, self.images, self.start = 0.0, 0, time.time()

    def add(self, loss: float, images: int, processes: int) -> None:
        self.loss_sum += loss * images
        self.images += images * processes

    def mean_loss(self, processes: int) -> float:
        return self.loss_sum / max(1, self.images / processes)

    def images_per_second(self) -> float:
        return self.images / max(1e-9, time.time() - self.start)

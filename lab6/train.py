"""Training: one ``accelerate`` loop that runs unchanged on a CPU, one GPU, or several processes.

Read top to bottom: set up (data, model, EMA, optimiser), maybe resume, then ``Trainer.train``'s loop of named
steps (batch, optimiser step, clock, log, checkpoint, evaluate) until the budget (steps, epochs or minutes) is spent.

Exact resume without saving random-number states: the batch order of every epoch and the noise of every step are
drawn from generators seeded by (seed, epoch) and (seed, step, process), so a run resumed at step k draws exactly
what the uninterrupted run drew at step k. What a run folder holds: ``lab6.run_files``.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from .config import TrainConfig, lr_factor
from .data import ICLEVRDataset
from .diffusion import training_loss
from .init_from import pretrained_weights, run_parent
from .loading import save_pipeline
from .pipeline import build_pipeline
from .run_files import CHECKPOINTS, commit_checkpoint, latest_checkpoint, room_named
from .sampling import Sampling, run_splits
from .scoring import load_evaluators
from .trackers import RunLog
from .train_state import LossWindow, TrainState


def process_state() -> PartialState:
    """This process among those launched together. On a machine without an accelerator ``cpu=True`` is what makes
    processes launched together (`accelerate launch --multi_gpu`, torchrun) join one gloo group instead of each
    training alone, and accelerate fixes it at the state's first construction: ask here, not ``PartialState()``."""
    return PartialState(cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()))


class Trainer:
    def __init__(self, cfg: TrainConfig, data_root: str | Path, out: str | Path, *, resume: bool = False,
                 evaluator: str | Path | None = None, progress: bool = True):
        if not any((cfg.steps, cfg.epochs, cfg.minutes)):
            raise ValueError("give a budget: steps, epochs or minutes (e.g. --minutes 60)")
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.data_root, self.evaluator_path = Path(data_root), evaluator
        no_accelerator = process_state().device.type == "cpu"  # several processes: one gloo group (process_state)
        precision = cfg.resolved_mixed_precision()  # on a CPU, torch's own autocast (Trainer.autocast)
        self.cpu_bf16 = no_accelerator and precision == "bf16"
        self.accelerator = Accelerator(cpu=no_accelerator, mixed_precision="no" if no_accelerator else precision,
                                       **RunLog.accelerate_kwargs(cfg.log_with, self.out))
        acc = self.accelerator
        if acc.num_processes > 1 and cfg.batch_size % acc.num_processes:
            raise ValueError(f"batch_size {cfg.batch_size} must divide evenly among {acc.num_processes} processes")
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(cfg.to_json())
        self.dataset = ICLEVRDataset(self.data_root, cfg.image_size, augment=cfg.augment,
                                     progress=progress and acc.is_main_process)
        self.steps_per_epoch = len(self.dataset) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} training images are fewer than one batch of {cfg.batch_size}")
        self.noise_scheduler = cfg.noise_scheduler()
        torch.manual_seed(cfg.seed)
        model = cfg.build_model()
        checkpoint = latest_checkpoint(self.out) if resume else None
        if cfg.init_from and checkpoint is None:  # resuming loads the checkpoint's weights instead
            # The configs matched (pretrained_weights), so only the weights of a newly added head can be missing.
            model.load_state_dict({**model.state_dict(), **pretrained_weights(cfg)})
        self.parent = run_parent(self.out, cfg.init_from, resuming=checkpoint is not None,
                                 write=acc.is_main_process)
        self.ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.ema.to(acc.device)
        self.state = TrainState()
        acc.register_for_checkpointing(self.ema, self.state)
        if resume and checkpoint is None:
            acc.print(f"--resume: no checkpoint in {self.out / CHECKPOINTS} yet, starting from step 0")
        elif checkpoint is not None:
            acc.load_state(str(checkpoint))
            acc.print(f"resumed from {checkpoint} (step {self.state.step}, {self.state.elapsed / 60:.1f} min trained)")
        resume_step = self.state.step if checkpoint is not None else None
        self.records = RunLog(acc, self.out, json.loads(cfg.to_json()), resume_step)  # CSVs and trackers
        self._epoch_order: tuple[int, torch.Tensor] | None = None
        self._stop_signal = 0  # the signal that asked to stop (SIGTERM, SIGINT), 0 for none

    # -- the data and randomness of one step, derived from (seed, step) only ---------------------------------
    def batch_indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            self._epoch_order = (epoch, torch.randperm(len(self.dataset), generator=g))
        b = self.cfg.batch_size
        global_batch = self._epoch_order[1][position * b:(position + 1) * b]
        acc = self.accelerator
        return global_batch[acc.process_index::acc.num_processes]

    def step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.cfg.seed << 40) + (step << 8) + self.accelerator.process_index)

    # -- budget -------------------------------------------------------------------------------------------------
    def progress_fraction(self) -> float:
        """How much of the budget is spent (the largest fraction over the budgets given)."""
        cfg, s = self.cfg, self.state
        budgets = [(s.step, cfg.steps), (s.step, cfg.epochs and cfg.epochs * self.steps_per_epoch),
                   (s.elapsed, cfg.minutes and cfg.minutes * 60)]
        return max(spent / budget for spent, budget in budgets if budget)

    # -- the loop -----------------------------------------------------------------------------------------------
    def train(self) -> Path | None:
        """Run to the end of the budget; returns the exported model folder (None when stopped by SIGTERM: the
        checkpoint it saved holds everything, and ``--resume`` continues exactly)."""
        acc, cfg, state = self.accelerator, self.cfg, self.state
        stops = (signal.SIGTERM, signal.SIGINT)
        previous_handlers = {s: signal.signal(s, self._on_stop) for s in stops} if acc.is_main_process else {}
        known = [n for n in (cfg.steps, cfg.epochs and int(cfg.epochs * self.steps_per_epoch)) if n]  # steps, if known
        self._bar = tqdm(total=min(known, default=None), initial=state.step, desc="training", unit="step",
                         disable=not (self.progress and acc.is_main_process), dynamic_ncols=True)
        self._window, self._checkpointed_at = LossWindow(), state.elapsed
        try:
            while self.progress_fraction() < 1:
                started = time.time()
                images, labels, generator = self.next_batch()     # batch: drawn from (seed, step) alone
                loss = self.optimiser_step(images, labels, generator)  # step: loss, backward, AdamW, EMA
                stop = self.advance_clock(started)                 # clock: one for every process
                self.log(loss, len(images))                        # log: metrics.csv and the progress bar
                if stop or self.checkpoint_due():                  # checkpoint: by steps, minutes, SIGTERM, Ctrl-C
                    self.save_checkpoint()
                if stop:
                    self.records.end()
                    if self._stop_signal == signal.SIGINT:  # Ctrl-C: the same clean stop, then the usual exit
                        acc.print(f"\ninterrupted at step {state.step}: checkpoint saved, resume with --resume")
                        raise KeyboardInterrupt
                    acc.print(f"stopped by SIGTERM at step {state.step}; resume with --resume")
                    return None
                if cfg.eval_every and state.step % cfg.eval_every == 0:  # evaluate: grids and accuracy
                    self.evaluate()
        finally:
            self._bar.close()
            for stop_signal, handler in previous_handlers.items():
                signal.signal(stop_signal, handler)
        self.save_checkpoint()
        self.export(self.out / "model")
        self.evaluate()
        self.records.end()
        return self.out / "model"

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        """This step's images and labels (augmented) on the device, and the generator of its noise."""
        generator = self.step_generator(self.state.step)
        images, labels = self.dataset.batch(self.batch_indices(self.state.step), generator=generator)
        return images.to(self.accelerator.device), labels.to(self.accelerator.device), generator

    def optimiser_step(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> float:
        """One step of AdamW on the diffusion loss (at this step's learning rate), then the EMA; returns the loss."""
        cfg, acc = self.cfg, self.accelerator
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(self.state.step, self.progress_fraction(), cfg)
        with self.autocast():
            loss = self.loss(images, labels, generator)
        acc.backward(loss)
        if cfg.grad_clip:
            acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(acc.unwrap_model(self.model).parameters())
        self.state.step += 1
        return loss.item()

    def autocast(self):
        """The loss's mixed precision, the recipe's: accelerate's on a GPU; on a CPU torch's bf16 autocast, as
        accelerate holds one precision per process, where a notebook or the tests train in bf16 and in full."""
        if self.accelerator.device.type != "cpu":
            return self.accelerator.autocast()
        return torch.autocast("cpu", torch.bfloat16, enabled=self.cpu_bf16)

    def loss(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The loss one step minimises: the recipe's denoising loss (a distillation overrides it, lab6.distill)."""
        return training_loss(self.model, images, labels, self.noise_scheduler, generator=generator,
                             cond_dropout=self.cfg.cond_dropout, min_snr_gamma=self.cfg.min_snr_gamma or None,
                             offset_noise=self.cfg.offset_noise, max_timestep=self.cfg.max_timestep)

    def advance_clock(self, started: float) -> bool:
        """Add this step's seconds to the run's clock; returns whether SIGTERM asked to stop. One clock for every
        process, the main one's, so budgets and checkpoints agree everywhere."""
        acc, state = self.accelerator, self.state
        clock = torch.tensor([state.elapsed + time.time() - started, float(self._stop_signal)], device=acc.device)
        clock = broadcast(clock) if acc.num_processes > 1 else clock
        state.elapsed = float(clock[0])
        return bool(clock[1])

    def log(self, loss: float, images: int) -> None:
        """Every ``log_every`` steps: the mean loss and images/s since the last row, to metrics.csv and the bar."""
        processes, s = self.accelerator.num_processes, self.state
        self._window.add(loss, images, processes)
        self._bar.update()
        if s.step % self.cfg.log_every == 0:
            mean_loss, rate = self._window.mean_loss(processes), self._window.images_per_second()
            self.records.metrics_row(step=s.step, epoch=round(s.step / self.steps_per_epoch, 3),
                                     loss=round(mean_loss, 5), lr=f"{self.optimizer.param_groups[0]['lr']:.3e}",
                                     images_per_s=round(rate, 2), elapsed_min=round(s.elapsed / 60, 2))
            self._bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}", min=f"{s.elapsed / 60:.1f}",
                                  left=f"{s.minutes_left(self.progress_fraction()):.1f}")
            self._window = LossWindow()

    def checkpoint_due(self) -> bool:
        cfg, state = self.cfg, self.state
        due_by_steps = bool(cfg.checkpoint_steps) and state.step % cfg.checkpoint_steps == 0
        return due_by_steps or state.elapsed - self._checkpointed_at >= cfg.checkpoint_minutes * 60

    def _on_stop(self, signum, frame) -> None:
        """SIGTERM or Ctrl-C: stop after this step, with a checkpoint (a checkpoint taken inside a step would hold
        weights one update ahead of its step). A second Ctrl-C stops at once; the last checkpoint stands."""
        if signum == signal.SIGINT and self._stop_signal == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_signal = signum

    # -- checkpoints, export, evaluation --------------------------------------------------------------------
    def metadata(self) -> dict:
        """What a model folder records about its training (``lab6.json``); a fine-tuned model keeps its
        starting model's record as ``parent``, so the whole training history travels with the weights."""
        cfg, s = self.cfg, self.state
        return {"guidance": cfg.guidance_scale, "sampler": cfg.eval_sampler, "steps": cfg.eval_steps,
                "train_step": s.step, "train_minutes": round(s.elapsed / 60, 2),
                "epochs": round(s.step / self.steps_per_epoch, 3), "data_root": str(self.data_root),
                "processes": self.accelerator.num_processes,
                "recipe": json.loads(cfg.to_json()), **({"parent": self.parent} if self.parent is not None else {})}

    @contextmanager
    def ema_weights(self):
        """The model with its EMA weights in place for the block (exports and evaluation), then its own again."""
        model = self.accelerator.unwrap_model(self.model)
        self.ema.store(model.parameters())
        self.ema.copy_to(model.parameters())
        try:
            yield model
        finally:
            self.ema.restore(model.parameters())

    def export(self, path: Path) -> Path:
        """Write the EMA weights as a model folder (main process)."""
        acc = self.accelerator
        if acc.is_main_process:
            with self.ema_weights() as model:
                save_pipeline(build_pipeline(model, self.noise_scheduler.config, self.cfg.guidance_scale), path,
                              self.metadata())
        acc.wait_for_everyone()
        return path

    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        self._checkpointed_at = self.state.elapsed
        final, tmp = (self.out / CHECKPOINTS / f"{hidden}step-{self.state.step:08d}" for hidden in ("", ".tmp-"))
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        with room_named(final, tmp):  # a full disk: one error naming the checkpoint, the last good one intact
            acc.save_state(str(tmp))
        self.export(tmp / "ema")
        if acc.is_main_process:
            commit_checkpoint(tmp, final, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    def evaluate(self) -> dict[str, float]:
        """Draw each evaluation split with the EMA weights, save its grid, and score it with every evaluator found
        (eval.csv); returns ``{"split (evaluator)": accuracy}``."""
        acc, cfg, step = self.accelerator, self.cfg, self.state.step
        results: dict[str, float] = {}
        if acc.is_main_process and cfg.eval_splits:  # none (a refiner, a pair's stage): no evaluators to load
            evaluators = load_evaluators([self.evaluator_path] if self.evaluator_path else None, self.data_root,
                                         device=acc.device, required=False,
                                         log=lambda message: warnings.warn(f"during training: {message}"))
            sampling = Sampling(cfg.eval_sampler, cfg.eval_steps, cfg.guidance_scale, seed=cfg.seed)
            with self.ema_weights() as model:
                model.eval()
                pipe = build_pipeline(model, self.noise_scheduler.config, cfg.guidance_scale)
                runs = run_splits(pipe, self.data_root, cfg.eval_splits, evaluators, sampling, self.out / "samples",
                                  f"step-{step:08d}-")
                model.train()
            results = self.records.evaluation(runs, step, elapsed_min=round(self.state.elapsed / 60, 2),
                                              sampler=cfg.eval_sampler, steps=cfg.eval_steps,
                                              guidance=cfg.guidance_scale)
            if results:
                acc.print(f"step {step}: accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()))
        acc.wait_for_everyone()
        return results


def train(cfg: TrainConfig, data_root: str | Path, out: str | Path, **kwargs) -> Path | None:
    """Train (or with ``resume=True`` continue) a run; returns the exported model folder."""
    return Trainer(cfg, data_root, out, **kwargs).train()

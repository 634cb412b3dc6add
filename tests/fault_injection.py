"""Faults for tests: a callback that kills its own process at a given training batch, to test
resuming (from the command line: +callbacks.kill._target_=fault_injection.KillAt, tests/ on
PYTHONPATH), and a NaN training loss at a given step (in process, or from the command line)."""

from __future__ import annotations

import os
import signal

from pytorch_lightning import Callback


class KillAt(Callback):
    """Sends ``signal_name`` to its own process at training batch ``batch`` of ``epoch``, at the
    batch's start or (``when="before_backward"``) before its backward pass; under DDP, with
    ``rank``, only that process does (as a scheduler signals one process)."""

    def __init__(self, epoch: int, batch: int, signal_name: str = "SIGKILL", rank: int | None = None,
                 when: str = "batch_start") -> None:
        self.epoch, self.batch, self.signal, self.rank = epoch, batch, getattr(signal, signal_name), rank
        self.when, self.batch_idx = when, -1

    def _kill(self, trainer, when: str) -> None:
        if self.when == when and trainer.current_epoch == self.epoch and self.batch_idx == self.batch \
                and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signal)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_idx = batch_idx
        self._kill(trainer, "batch_start")

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        """``when="before_backward"``: after the forward pass, before the gradients' all-reduce."""
        self._kill(trainer, "before_backward")


def poison_vae_loss(monkeypatch, step: int) -> None:
    """Make the VAE's training loss NaN at optimizer step ``step`` (its reconstruction term)."""
    from genlab.models.vae import VAE

    original = VAE._elbo_parts

    def poisoned(self, x, labels=None):
        nll, kl, mu = original(self, x, labels)
        return (nll * float("nan") if self.training and self.global_step == step else nll), kl, mu

    monkeypatch.setattr(VAE, "_elbo_parts", poisoned)


class NaNWeightsAt(Callback):
    """Fills the model's first parameter with NaN at the start of training step ``step`` (from
    the command line: ``+callbacks.nan._target_=fault_injection.NaNWeightsAt``), so the loss of
    that step is non-finite."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            import torch

            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class KillJob(Callback):
    """Sends SIGKILL to its own process (a multirun's launcher, with Hydra's basic launcher) at
    training batch ``batch`` of ``epoch`` of the sweep's job ``job``, unless the sweep was resumed
    (``resume=`` among its overrides): the same sweep command, resumed, then runs through."""

    def __init__(self, job: int, epoch: int, batch: int) -> None:
        self.job, self.epoch, self.batch = job, epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        if (hc.job.num == self.job and trainer.current_epoch == self.epoch and batch_idx == self.batch
                and not any(o.startswith("resume=") for o in hc.overrides.task)):
            os.kill(os.getpid(), signal.SIGKILL)

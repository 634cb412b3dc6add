"""What every genlab objective shares: prior draws, cheap per-step logging, perplexity."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import torch
from pytorch_lightning import LightningModule
from pytorch_lightning.plugins.precision import MixedPrecision
from torchmetrics import MeanMetric

from genlab.utils.errors import GenlabError


FUSED_OPTIMIZERS = ("Adam", "AdamW")


def make_optimizer(factory: Callable[..., torch.optim.Optimizer], params: Iterable[torch.Tensor],
                   fuse: bool = True) -> torch.optim.Optimizer:
    """``factory(params=params)``, with ``fused=True`` for torch's Adam and AdamW when the config
    sets neither ``fused`` nor ``foreach`` and every parameter is a floating-point tensor on the
    CPU or a GPU: the same update, computed in one kernel instead of a Python loop over the
    tensors.
    A torch that has no fused kernel for the device gets the plain optimizer, and so does
    ``fuse=False`` (clipped gradients under mixed precision, see ``GenerativeModule.build_optimizer``).
    ``+model.optimizer.fused=false`` turns it off."""
    params = list(params)
    cls, keywords = getattr(factory, "func", None), getattr(factory, "keywords", None) or {}
    fusable = (
        fuse and isinstance(cls, type) and cls.__module__.startswith("torch.optim") and cls.__name__ in FUSED_OPTIMIZERS
        and keywords.get("fused") is None and keywords.get("foreach") is None and not keywords.get("differentiable")
        and params and all(isinstance(p, torch.Tensor) and p.is_floating_point() and p.device.type in ("cpu", "cuda")
                           for p in params)
    )
    if fusable:
        try:
            return factory(params=params, fused=True)
        except (RuntimeError, ValueError):  # an older torch without the CPU kernel
            pass
    return factory(params=params)


CHECKS_QUEUED = 64  # loss checks queued on a GPU before they are read (see loss_is_finite)


def nonfinite_error(name: str, value: torch.Tensor, epoch: int, step: int) -> GenlabError:
    return GenlabError(
        f"non-finite loss at epoch {epoch}, step {step}: {name}={value.float().item()}. "
        "Lower model.optimizer.lr, clip gradients, or set nonfinite=skip to skip such steps."
    )


class GenerativeModule(LightningModule):
    """Base class of genlab's objectives (subclasses set ``latent_dim``)."""

    latent_dim: int
    _perplexity: dict[str, MeanMetric]
    nonfinite: str = "stop"  # what a NaN/inf training loss does: stop | skip (train.py sets it)
    nonfinite_skipped: int = 0
    nonfinite_deferred: bool | None = None  # None: queue the checks on a GPU, check at once elsewhere

    def build_optimizer(self, factory: Callable[..., torch.optim.Optimizer], params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """``make_optimizer(factory, params)``, with fused kernels except where gradients are
        clipped (``trainer.gradient_clip_val``, the GANs' ``grad_clip``) under a ``*-mixed``
        precision: there Lightning's precision plugin refuses to clip for a fused optimizer (which
        unscales 16-bit gradients inside its step, after any clipping could happen). Under a grad
        scaler without clipping, the fused step is also the one that does not wait for the GPU:
        it takes the scaler's inf check as a tensor, where the plain step reads it on the host."""
        trainer = self.attached_trainer()
        if trainer is None:
            return make_optimizer(factory, params)
        clips = bool(getattr(self, "grad_clip", None) or trainer.gradient_clip_val)
        fuse = not (clips and isinstance(trainer.precision_plugin, MixedPrecision))
        return make_optimizer(factory, params, fuse)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the prior/noise distribution N(0, I), on the CPU."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def configure_optimizers(self) -> Any:
        """One optimizer over all parameters (``self.optimizer_factory``, see ``build_optimizer``), with the optional
        learning-rate scheduler ``self.scheduler_factory`` stepped per epoch."""
        optimizer = self.build_optimizer(self.optimizer_factory, self.parameters())
        if getattr(self, "scheduler_factory", None) is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)}}

    def loss_is_finite(self, loss: torch.Tensor, name: str = "train/loss") -> bool:
        """False when ``loss`` is NaN or infinite and the policy is ``skip`` (the caller skips the
        optimizer step); with ``stop``, raise a clear error before bad weights reach a checkpoint.

        On a GPU, ``stop`` does not read the loss at every step (reading it makes the host wait
        for the GPU's queued work): the check is queued and read every ``CHECKS_QUEUED`` steps,
        at the end of each training epoch, before validation and before a checkpoint is written
        (``check_queued_losses``); the error names the first bad step all the same.
        ``nonfinite_deferred`` set on the module chooses for any device."""
        value = loss.detach()
        deferred = value.is_cuda if self.nonfinite_deferred is None else self.nonfinite_deferred
        if self.nonfinite == "stop" and deferred and value.numel() == 1:
            queue = self.__dict__.get("_queued_checks")
            if queue is None:
                queue = self._queued_checks = []
            queue.append((value, name, self.current_epoch, self.global_step))
            if len(queue) >= CHECKS_QUEUED:
                self.check_queued_losses()
            return True
        if math.isfinite(value.item()) if value.numel() == 1 else bool(torch.isfinite(value).all()):
            return True
        if self.nonfinite == "skip":
            self.nonfinite_skipped += 1
            self.log("train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=True, on_epoch=False)
            return False
        raise nonfinite_error(name, value, self.current_epoch, self.global_step)

    def check_queued_losses(self) -> None:
        """Read the queued loss checks (one wait for the device) and raise for the first bad one."""
        checks = self.__dict__.get("_queued_checks")
        if not checks:
            return
        self._queued_checks = []
        finite = torch.isfinite(torch.stack([value.float() for value, *_ in checks])).tolist()
        for ok, (value, name, epoch, step) in zip(finite, checks):
            if not ok:
                raise nonfinite_error(name, value, epoch, step)

    def on_train_epoch_end(self) -> None:
        self.check_queued_losses()

    def on_validation_start(self) -> None:
        self.check_queued_losses()

    def on_train_end(self) -> None:
        self.check_queued_losses()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_queued_losses()  # raises before the file is written

    def attached_trainer(self) -> Any:
        """The trainer this module is attached to, or ``None`` (``self.trainer`` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def step_logs_due(self) -> bool:
        """Whether Lightning writes this training step's ``on_step`` values to the loggers: every
        ``trainer.log_every_n_steps`` batches that step the optimizers, and when the run stops.
        The values of the other steps would be dropped, and each ``self.log`` call costs host time
        on every step, so they are not logged at all; the curves are the same."""
        trainer = self.attached_trainer()
        if trainer is None or (self.automatic_optimization and trainer.accumulate_grad_batches > 1):
            return True  # with gradient accumulation Lightning counts optimizer steps: log every batch
        if trainer.log_every_n_steps == 0:
            return False
        done = trainer.fit_loop.epoch_loop.batch_progress.total.completed  # batches before this one
        return (done + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop

    def log_train_step(self, metrics: Mapping[str, torch.Tensor | float] | Callable[[], Mapping[str, torch.Tensor | float]],
                       batch_size: int, prog_bar: tuple[str, ...] = ()) -> None:
        """Log per-step training values (no cross-process sync) on the steps that get written.

        ``metrics`` may be a function that returns them: it is called only on those steps, so
        values computed for the log alone (means, probabilities) cost no operators, and on a GPU
        no kernels, on the other steps.

        The values go to Lightning as host tensors, copied from the device together (one wait
        for a GPU per logged step): Lightning turns the progress bar's values into Python numbers
        after every batch until the epoch ends, which for values on a GPU is a wait per batch."""
        if not self.step_logs_due():
            return
        if callable(metrics):
            metrics = metrics()
        scalars = [v.detach().reshape(()).float() for v in metrics.values() if torch.is_tensor(v) and v.numel() == 1]
        host = iter(torch.stack(scalars).cpu().unbind() if scalars else ())
        for name, value in metrics.items():
            if torch.is_tensor(value) and value.numel() == 1:
                value = next(host)
            elif not torch.is_tensor(value):
                value = torch.tensor(float(value))
            self.log(name, value, on_step=True, on_epoch=False, batch_size=batch_size, prog_bar=name in prog_bar)

    # ----------------------------------------------------------------- perplexity
    def accumulate_perplexity(self, name: str, nats: torch.Tensor, units: torch.Tensor) -> None:
        """Add a batch to the perplexity ``name`` (e.g. ``val/ppl``): ``nats`` per example
        (a negative log-likelihood or a bound on it) over ``units`` tokens per example.

        Perplexity is exp(total nats / total tokens) over the whole split, not a mean of batch
        perplexities; ``log_perplexities`` logs it (reduced across processes) at the epoch's end.
        """
        if not hasattr(self, "_perplexity"):
            self._perplexity = {}
        if name not in self._perplexity:
            self._perplexity[name] = MeanMetric().to(self.device)
        units = units.sum().float()
        self._perplexity[name].update(nats.detach().float().sum() / units, weight=units)

    def log_perplexities(self, stage: str) -> None:
        for name, metric in getattr(self, "_perplexity", {}).items():
            if name.startswith(f"{stage}/") and metric.update_count:
                # compute() has already reduced the metric across processes: the same value on each
                self.log(name, math.exp(min(float(metric.compute()), 700.0)), sync_dist=True)
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        self.log_perplexities("val")

    def on_test_epoch_end(self) -> None:
        self.log_perplexities("test")

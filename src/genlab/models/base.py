"""What every genlab objective shares: optimizers from the config, prior draws, per-step logging."""

from __future__ import annotations

from itertools import repeat
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from pytorch_lightning import LightningModule
from pytorch_lightning.plugins.precision import MixedPrecision

from genlab.nets.image import one_hot
from genlab.utils.errors import GenlabError


FUSED_OPTIMIZERS = ("Adam", "AdamW")
OptimizerFactory = Callable[..., torch.optim.Optimizer]  # a partially applied optimizer (``_partial_: true``)


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


class GenerativeModule(LightningModule):
    """Base class of genlab's objectives (subclasses set ``latent_dim``, and ``num_classes`` when
    they are class-conditional)."""

    latent_dim: int
    num_classes: int = 0  # > 0: the model generates for a requested class (model.conditional=true)
    grad_clip: float | None = None  # the model's own gradient-norm clipping (model.grad_clip)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def set_classes(self, conditional: bool, num_classes: int | None) -> None:
        """``model.conditional`` and the number of classes the data module gave (``train.py``)."""
        if conditional and not num_classes:
            raise GenlabError("model.conditional=true needs data with classes (MNIST, Fashion-MNIST, or text "
                              "with data.label=genre|column); this data gave none.")
        self.num_classes = int(num_classes or 0) if conditional else 0

    def condition(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What a conditional decoder or generator takes: the code with the one-hot label appended."""
        if not self.conditional:
            return z
        if labels is None:
            raise GenlabError("this model is class-conditional: give the labels of the samples to draw.")
        vectors = labels.to(z) if labels.dim() == 2 else one_hot(labels, self.num_classes, z)  # [B, C]: mixed classes
        return torch.cat([z, vectors], dim=1)

    def requested_labels(self, labels: Any, n: int) -> torch.Tensor | None:
        """Labels a caller asks samples for, checked on the host and returned on the model's
        device: ``None`` draws every class in turn for a conditional model; an unconditional model
        takes none."""
        if labels is None:
            labels = self.sample_labels(n)
            return None if labels is None else labels.to(self.device)
        if not self.conditional:
            raise GenlabError("this model is not class-conditional: it draws no requested class "
                              "(train it with model.conditional=true).")
        labels = torch.as_tensor(labels).cpu()
        if labels.dim() == 2:  # label vectors (a mix of classes, e.g. an interpolation between two)
            if labels.shape[1] != self.num_classes:
                raise GenlabError(f"label vectors must have {self.num_classes} entries, got {labels.shape[1]}.")
            return labels.float().to(self.device)
        labels = labels.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise GenlabError(f"labels must be classes 0..{self.num_classes - 1}; got {sorted(set(labels.tolist()))}.")
        return labels.to(self.device)

    def sample_labels(self, n: int) -> torch.Tensor | None:
        """Labels for ``n`` samples, every class in turn (``None`` for an unconditional model)."""
        return torch.arange(n) % self.num_classes if self.conditional else None

    def labels_of(self, batch: Any) -> torch.Tensor | None:
        """The labels of a batch when the model is conditional (its last part: images ``(x, y)``,
        text ``(tokens, lengths, labels)``), else ``None``."""
        return batch[-1] if self.conditional else None

    def generate_batches(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                         batch_size: int = 500) -> Iterator[torch.Tensor]:
        """``generate`` over ``z`` (and ``labels``) ``batch_size`` at a time, on the host (image models)."""
        label_parts = repeat(None) if labels is None else labels.split(batch_size)
        for part, part_labels in zip(z.split(batch_size), label_parts):
            yield self.generate(part, part_labels).cpu()

    def build_optimizer(self, factory: Callable[..., torch.optim.Optimizer], params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        """``make_optimizer(factory, params)``, with fused kernels except where gradients are
        clipped (``model.grad_clip``, ``trainer.gradient_clip_val``) under a ``*-mixed``
        precision: there Lightning's precision plugin refuses to clip for a fused optimizer (which
        unscales 16-bit gradients inside its step, after any clipping could happen). Under a grad
        scaler without clipping, the fused step is also the one that does not wait for the GPU:
        it takes the scaler's inf check as a tensor, where the plain step reads it on the host."""
        trainer = self.attached_trainer()
        if trainer is None:
            return make_optimizer(factory, params)
        clips = bool(self.grad_clip or trainer.gradient_clip_val)
        fuse = not (clips and isinstance(trainer.precision_plugin, MixedPrecision))
        return make_optimizer(factory, params, fuse)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's hook (automatic optimization): the model's ``grad_clip`` (a gradient-norm
        threshold) where it sets one, else ``trainer.gradient_clip_val``. Recurrent nets need
        clipping whatever the trainer's settings, so the text models' configs set it."""
        if self.grad_clip:
            gradient_clip_val, gradient_clip_algorithm = self.grad_clip, "norm"
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)

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

    def log_train_step(self, metrics: Mapping[str, torch.Tensor | float], batch_size: int,
                       prog_bar: tuple[str, ...] = ()) -> None:
        """Log per-step training values (no cross-process sync). Callers build ``metrics`` only
        when ``step_logs_due()``.

        The values go to Lightning as host tensors, copied from the device together (one wait
        for a GPU per logged step): Lightning turns the progress bar's values into Python numbers
        after every batch until the epoch ends, which for values on a GPU is a wait per batch."""
        names = [name for name, value in metrics.items() if torch.is_tensor(value)]
        host = torch.stack([metrics[name].detach().float().reshape(()) for name in names]).cpu() if names else []
        values = {**metrics, **dict(zip(names, host))}
        for name, value in values.items():
            self.log(name, value, on_step=True, on_epoch=False, batch_size=batch_size, prog_bar=name in prog_bar)

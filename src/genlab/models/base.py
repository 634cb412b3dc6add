"""What every genlab objective shares: cheap per-step logging."""

from __future__ import annotations

from typing import Mapping

import torch
from pytorch_lightning import LightningModule


class GenerativeModule(LightningModule):
    """Base class of genlab's objectives (subclasses set ``latent_dim``)."""

    latent_dim: int

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the prior/noise distribution N(0, I), on the CPU."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def step_logs_due(self) -> bool:
        """Whether Lightning writes this training step's ``on_step`` values to the loggers.

        It writes them every ``trainer.log_every_n_steps`` batches and drops the rest, yet each
        ``self.log`` call costs about a millisecond of bookkeeping on every step (measured:
        4 keys took 3.3 s of a 4.4 s Fashion-MNIST epoch). Logging only on the steps that get
        written keeps the curves identical at a fraction of the cost.
        """
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        if connector is None:
            return True
        try:
            return bool(connector.should_update_logs)
        except Exception:  # a Lightning version without it: log every step, as plain Lightning
            return True

    def log_train_step(self, metrics: Mapping[str, torch.Tensor | float], batch_size: int, prog_bar: tuple[str, ...] = ()) -> None:
        """Log per-step training values (no cross-process sync) on the steps that get written."""
        if not self.step_logs_due():
            return
        for name, value in metrics.items():
            self.log(name, value, on_step=True, on_epoch=False, batch_size=batch_size, prog_bar=name in prog_bar)

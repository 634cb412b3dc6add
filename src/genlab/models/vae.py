"""The VAE objective: maximise the ELBO (Kingma & Welling 2014).

Metric units: every ``*/elbo``, ``*/recon`` and ``*/kl`` is in nats per example (per image),
averaged over the examples seen. ``elbo`` is logged as the *negative* ELBO, -E_q[log p(x|z)] + KL,
the upper bound on -log p(x) that papers and ``pytorch/examples`` report: lower is better.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from genlab.models.base import GenerativeModule

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class VAE(GenerativeModule):
    """Variational autoencoder with a diagonal Gaussian posterior and a standard normal prior.

    Args:
        encoder: module mapping x to ``(mu, logvar)`` of q(z|x).
        decoder: module with ``log_prob(x, z)`` and ``mean(z)`` (it owns the likelihood).
        optimizer: partially applied optimizer, called with the parameters.
        latent_dim: size of z; must match the nets.
        beta: weight of the KL term (beta-VAE, Higgins et al. 2017); 1 gives the ELBO.
        kl_warmup_steps: ramp the KL weight linearly from 0 to ``beta`` over this many steps.
        scheduler: optional partially applied learning-rate scheduler (stepped per epoch).
        nll_samples: importance samples per test image for ``test/nll`` (0 turns it off); papers
            report k = 5000, e.g. ``python eval.py ckpt_path=... nll_samples=5000``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        optimizer: OptimizerFactory,
        latent_dim: int = 32,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        scheduler: Callable[..., Any] | None = None,
        nll_samples: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "decoder", "optimizer", "scheduler"], logger=False)
        self.encoder, self.decoder = encoder, decoder
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.latent_dim, self.beta, self.kl_warmup_steps = latent_dim, beta, kl_warmup_steps
        self.nll_samples = nll_samples

    # ----------------------------------------------------------------- the objective
    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example ``(log p(x|z), KL(q(z|x) || p(z)))`` with one reparameterised sample."""
        mu, logvar = self.encoder(x)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        log_px = self.decoder.log_prob(x, z)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return log_px, kl

    @torch.no_grad()
    def iwae_nll(self, x: torch.Tensor, k: int, chunk: int = 256) -> torch.Tensor:
        """Importance-weighted estimate of -log p(x) per example, in nats (Burda et al. 2015).

        log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_i ~ q(z|x); the bound tightens
        as k grows and equals the ELBO at k = 1. Samples are drawn ``chunk`` at a time so memory
        stays at ``chunk`` decoder passes over the batch.
        """
        mu, logvar = self.encoder(x)
        mu, logvar = mu.float(), logvar.float()
        std = torch.exp(0.5 * logvar)
        log_w = []
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            eps = torch.randn(c, *mu.shape, device=mu.device)
            z = mu + std * eps                                    # [c, B, L]
            log_px = self.decoder.log_prob(x.repeat(c, *[1] * (x.dim() - 1)), z.flatten(0, 1)).view(c, -1)
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).sum(-1) - (0.5 * logvar).sum(-1)
            log_w.append(log_px + log_pz - log_qz)
        log_w = torch.cat(log_w)                                  # [k, B]
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))

    def kl_weight(self) -> float:
        if self.kl_warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, self.global_step / self.kl_warmup_steps)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0]
        log_px, kl = self.elbo_terms(x)
        recon, kl = -log_px.mean(), kl.mean()
        elbo = recon + kl
        if stage == "train":
            weight = self.kl_weight()
            loss = recon + weight * kl
            metrics = {"train/loss": loss, "train/elbo": elbo, "train/recon": recon, "train/kl": kl}
            if self.kl_warmup_steps > 0:
                metrics["train/kl_weight"] = weight
            self.log_train_step({k: v.detach() if torch.is_tensor(v) else v for k, v in metrics.items()},
                                batch_size=x.shape[0], prog_bar=("train/elbo",))
            return loss
        # val/* and test/* are averaged over all examples of the epoch (batch_size weights the
        # batches) and reduced across DDP processes once at its end
        metrics = {f"{stage}/elbo": elbo, f"{stage}/recon": recon, f"{stage}/kl": kl}
        for name, value in metrics.items():
            self.log(name, value, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True,
                     prog_bar=name == f"{stage}/elbo")
        return elbo

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")
        if self.nll_samples > 0:
            x = batch[0]
            self.log("test/nll", self.iwae_nll(x, self.nll_samples).mean(), on_epoch=True,
                     batch_size=x.shape[0], sync_dist=True)

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder means for latent codes ``z`` (e.g. prior samples)."""
        return self.decoder.mean(z.to(self.device))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encoder(x.to(self.device))
        return self.decoder.mean(mu)

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)}}

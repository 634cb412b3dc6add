"""A GAN in the code space of an autoencoder: how genlab trains a GAN on discrete tokens by plain
backpropagation (adversarially regularised autoencoder, ARAE; Zhao et al. 2018).

Sampling a sentence is z -> generator -> code -> decoder. Per batch, under manual optimization:

1. autoencoder step: reconstruct x from its (noised) code, ``-log p(x | code)``;
2. the GAN objective's ``n_critic`` critic steps and one generator step, with the encoder's codes
   as the real data;
3. encoder step against the critic (weight ``adv_weight``): codes drift towards the
   generator's, so the decoder learns to read what the generator writes.

Metric units: ``*/recon`` in nats per sentence, ``*/recon_ppl`` the per-token perplexity of
reconstructions (not a language-model perplexity: the code is given).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.metrics.perplexity import Perplexity
from genlab.models import gan_losses
from genlab.models.gan import GAN, OptimizerFactory
from genlab.nets.likelihoods import TokenDecoder
from genlab.utils.errors import GenlabError


class LatentGAN(GAN):
    """ARAE: an autoencoder (``encoder``, ``decoder``) plus the GAN objective on its codes.

    Args:
        encoder: maps x to ``(code, _)`` (an ``RNNEncoder``; its ``mu`` is the code, normalised
            to the unit sphere as in ARAE).
        decoder: a ``TokenDecoder`` (``log_prob(x, code)``, ``units(x)``, ``generate(code, ...)``).
        generator, discriminator: MLPs from noise to codes and from codes to a score.
        optimizer_ae: partially applied optimizer of the autoencoder.
        code_noise: std of Gaussian noise added to codes in the autoencoder step ...
        code_noise_decay: ... multiplied by this every 100 batches (ARAE anneals it).
        adv_weight: weight of the encoder's adversarial step (0 turns it off).
        sample: keyword arguments of the decoder's ``generate``.
        **gan_kwargs: the GAN objective's options (``loss``, ``n_critic``, ``optimizer``, ...).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: TokenDecoder,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_ae: OptimizerFactory,
        code_noise: float = 0.1,
        code_noise_decay: float = 0.995,
        adv_weight: float = 1.0,
        sample: dict[str, Any] | None = None,
        **gan_kwargs: Any,
    ) -> None:
        super().__init__(generator=generator, discriminator=discriminator, **gan_kwargs)
        if code_noise < 0 or not 0 < code_noise_decay <= 1:
            raise GenlabError("model.code_noise must be >= 0 and model.code_noise_decay in (0, 1].")
        self.encoder, self.decoder, self.optimizer_ae = encoder, decoder, optimizer_ae
        self.code_noise, self.code_noise_decay, self.adv_weight = code_noise, code_noise_decay, adv_weight
        self.sample = dict(sample or {})
        self.perplexity = nn.ModuleDict({"val_recon_ppl": Perplexity(), "test_recon_ppl": Perplexity()})

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The sentence's code on the unit sphere."""
        return F.normalize(self.encoder(x)[0].float(), dim=-1)

    def real_input(self, batch: Any) -> torch.Tensor:
        return self.encode(batch[0]).detach()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d, opt_ae = self.optimizers()
        x = batch[0]
        with self.toggled_optimizer(opt_ae):
            code = self.encode(x)
            noise = self.code_noise * self.code_noise_decay ** (self.batches_seen // 100)
            nll = -self.decoder.log_prob(x, code + noise * torch.randn_like(code))
            recon = nll.mean()
            self._step(opt_ae, recon)
        adversarial = self.adversarial_step(code.detach(), opt_g, opt_d)
        e_loss = None
        if self.adv_weight > 0:
            with self.toggled_optimizer(opt_ae):  # only the encoder gets gradients here
                e_loss = self.adv_weight * gan_losses.e_loss(self.loss_name, self.discriminator(self.encode(x)))
                self._step(opt_ae, e_loss)
        self.batches_seen += 1
        if self.step_logs_due():
            metrics = {**adversarial, "train/recon": recon, "train/recon_token": nll.sum() / self.decoder.units(x).sum()}
            if e_loss is not None:
                metrics["train/e_loss"] = e_loss
            self.log_train_step(metrics, batch_size=x.shape[0], prog_bar=("train/recon", "train/d_loss"))

    def _eval_step(self, batch: Any, stage: str) -> None:
        x = batch[0]
        code = self.encode(x)  # once: the critic's real input and the code reconstructed from
        self._log_discriminator(code, stage)
        nll = -self.decoder.log_prob(x, code)
        self.log(f"{stage}/recon", nll.mean(), on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        perplexity = self.perplexity[f"{stage}_recon_ppl"]
        perplexity.update(nll, self.decoder.units(x))
        self.log(f"{stage}/recon_ppl", perplexity, on_step=False, on_epoch=True)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, **sample: Any) -> torch.Tensor:
        """Token ids decoded from the generator's codes for noise ``z``."""
        return self.decoder.generate(self.sampler(z.to(self.device)).float(), **{**self.sample, **sample})

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Sentences decoded from the codes of ``x`` (``labels``: the VAE's signature; this model
        is never conditional, so there are none)."""
        return self.decoder.generate(self.encode(x.to(self.device)), **self.sample)

    def configure_optimizers(self) -> Any:
        optimizers, schedulers = super().configure_optimizers()
        ae_params = [*self.encoder.parameters(), *self.decoder.parameters()]
        return [*optimizers, self.build_optimizer(self.optimizer_ae, ae_params)], schedulers

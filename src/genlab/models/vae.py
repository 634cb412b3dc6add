"""The VAE objective: maximise the ELBO (Kingma & Welling 2014).

Metric units: every ``*/elbo``, ``*/recon`` and ``*/kl`` is in nats per example (per image or
per sentence), averaged over the examples seen. ``elbo`` is logged as the *negative* ELBO,
-E_q[log p(x|z)] + KL, the upper bound on -log p(x) that papers and ``pytorch/examples`` report:
lower is better. For decoders over tokens (they have ``units(x)``), ``*/ppl`` is the per-token
perplexity bound exp(sum of -ELBO / sum of tokens), and ``test/ppl_iw`` the tighter one from
``test/nll``. ``*/active_units`` counts latent dimensions with Cov_x(E_q[z|x]) > 0.01 (Burda et al.).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torchmetrics.utilities.distributed import gather_all_tensors

from genlab.metrics.latent import active_units
from genlab.metrics.perplexity import Perplexity
from genlab.models.base import GenerativeModule, OptimizerFactory
from genlab.models.kl_schedules import check_schedule, kl_weight
from genlab.nets.likelihoods import Decoder, TokenDecoder
from genlab.utils.errors import GenlabError


class VAE(GenerativeModule):
    """Variational autoencoder with a diagonal Gaussian posterior and a standard normal prior.

    Args:
        encoder: module mapping x to ``(mu, logvar)`` of q(z|x).
        decoder: a ``genlab.nets.likelihoods.Decoder``: it owns the likelihood ``log_prob(x, z)``;
            a ``TokenDecoder`` (with ``units(x)``) adds per-token perplexities.
        optimizer: partially applied optimizer, called with the parameters.
        latent_dim: size of z; must match the nets.
        beta: weight of the KL term (beta-VAE, Higgins et al. 2017); 1 gives the ELBO.
        kl_warmup_steps: grow the KL weight from 0 to ``beta`` over this many steps ...
        kl_schedule: ... along ``linear``, ``sigmoid`` or ``cyclical`` (Fu et al. 2019, with
            ``kl_cycles`` cycles each rising over ``kl_cycle_ratio`` of its length).
        free_bits: per-dimension KL floor in nats (Kingma et al. 2016): the training loss counts
            max(free_bits, batch-mean KL) per latent dimension, so z is not pushed to collapse.
            The logged ELBO is always the true one.
        scheduler: optional partially applied learning-rate scheduler (stepped per epoch).
        nll_samples: importance samples per test image for ``test/nll`` (0 turns it off); papers
            report k = 5000, e.g. ``python eval.py ckpt_path=... nll_samples=5000``.
        nll_chunk: importance samples decoded per pass (memory: ``nll_chunk`` x test batch decodes).
        nll_examples: ``test/nll`` over the first this many test examples (per process; ``None``:
            all). The bound costs ``nll_samples`` decodes an example: ``train.py``'s test after a
            short fit stays short, and ``eval.py`` takes the whole split.
        sample: keyword arguments of the decoder's ``generate`` (text: ``temperature``, ``top_k``,
            ``greedy``, ``max_len``).
        grad_clip: clip the gradient norm to this value (else ``trainer.gradient_clip_val`` applies).
        conditional: the conditional VAE of Sohn et al. 2015: encoder q(z|x, y), decoder
            p(x|z, y) and a learned Gaussian prior per class p(z|y) = N(mu_y, diag sigma_y^2); the
            ELBO and IWAE bound are then of log p(x|y), in nats.
        num_classes: the data's number of classes (``train.py`` fills it in from the data).
        iwae_samples: train on the importance-weighted bound with this many draws per example
            (Burda et al. 2016) instead of the ELBO (1); validation and test report the same
            ELBO and IWAE bound as for an ELBO-trained model. It is the bound itself, so it takes
            neither ``beta``, a KL warm-up nor free bits.
        init_output_bias: before training, set the decoder's output bias to the log-odds of the
            mean training image, so the first decodes are the data's mean image instead of grey
            (Hinton 2010's advice for the visible biases of binary units); with few images it
            ends lower (docs/vae.md). Needs a decoder with a bias per pixel (the MLP decoder)
            and a data module with ``images("train")``. A resumed run keeps its checkpoint's bias.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Decoder,
        optimizer: OptimizerFactory,
        latent_dim: int = 32,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        scheduler: Callable[..., Any] | None = None,
        nll_samples: int = 100,
        nll_chunk: int = 256,
        nll_examples: int | None = None,
        kl_schedule: str = "linear",
        kl_cycles: int = 4,
        kl_cycle_ratio: float = 0.5,
        free_bits: float = 0.0,
        sample: dict[str, Any] | None = None,
        grad_clip: float | None = None,
        conditional: bool = False,
        num_classes: int | None = None,
        iwae_samples: int = 1,
        init_output_bias: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "decoder", "optimizer", "scheduler"], logger=False)
        if iwae_samples < 1:
            raise GenlabError(f"model.iwae_samples must be at least 1, got {iwae_samples}.")
        if iwae_samples > 1 and (beta != 1.0 or kl_warmup_steps > 0 or free_bits > 0):
            raise GenlabError("model.iwae_samples > 1 trains on the IWAE bound itself: set model.beta=1, "
                              "model.kl_warmup_steps=0 and model.free_bits=0.")
        self.iwae_samples, self.init_output_bias = iwae_samples, init_output_bias
        self.encoder, self.decoder = encoder, decoder
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.latent_dim, self.beta, self.kl_warmup_steps = latent_dim, beta, kl_warmup_steps
        self.kl_schedule, self.kl_cycles, self.kl_cycle_ratio = check_schedule(kl_schedule), kl_cycles, kl_cycle_ratio
        self.nll_samples, self.nll_chunk, self.free_bits = nll_samples, max(1, nll_chunk), free_bits
        self.nll_examples, self.nll_seen = nll_examples, 0
        self.sample, self.grad_clip = dict(sample or {}), grad_clip
        self.set_classes(conditional, num_classes)
        if self.conditional:  # p(z|y): starts as N(0, I) for every class
            self.prior_mean = nn.Embedding(self.num_classes, latent_dim)
            self.prior_logvar = nn.Embedding(self.num_classes, latent_dim)
            nn.init.zeros_(self.prior_mean.weight)
            nn.init.zeros_(self.prior_logvar.weight)
        self.per_token = isinstance(decoder, TokenDecoder)
        if self.per_token:  # corpus perplexities: exp(total nats / total tokens) of the split
            self.perplexity = nn.ModuleDict({name: Perplexity() for name in ("val_ppl", "test_ppl", "test_ppl_iw")})
        self._means: list[torch.Tensor] = []

    def setup(self, stage: str) -> None:
        # before Lightning restores a checkpoint, so a resumed run keeps the bias it trained
        if stage == "fit" and self.init_output_bias:
            datamodule = self.trainer.datamodule
            if not hasattr(datamodule, "images"):
                raise GenlabError("model.init_output_bias takes the mean training image from the data module's "
                                  "images('train') (genlab's MNISTDataModule); this run's data has none.")
            self.decoder.init_output_bias(datamodule.images("train").mean(0))

    # ----------------------------------------------------------------- the objective
    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q(z|x) (conditional: q(z|x, y)), in float32."""
        mu, logvar = self.encoder(x, labels) if self.conditional else self.encoder(x)
        return mu.float(), logvar.float()

    def _elbo_parts(self, x: torch.Tensor, labels: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(-log p(x|z) [B], KL per latent dimension [B, L], posterior mean [B, L])``, with one
        reparameterised sample z (the losses in float32, also under mixed precision)."""
        mu, logvar = self.posterior(x, labels)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        nll = -self.decoder.log_prob(x, self.condition(z, labels))
        p_mean, p_logvar = self.prior(labels, mu)
        kl_dims = 0.5 * (p_logvar - logvar + (logvar.exp() + (mu - p_mean).pow(2)) / p_logvar.exp() - 1.0)
        return nll, kl_dims, mu

    def prior(self, labels: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the prior p(z) = N(0, I), or p(z|y) of a conditional model
        (for label vectors ``[B, C]``, a mix of classes, the classes' parameters mixed likewise)."""
        if not self.conditional:
            return torch.zeros_like(like), torch.zeros_like(like)
        labels = labels.to(like.device)
        if labels.dim() == 2:
            return labels.float() @ self.prior_mean.weight.float(), labels.float() @ self.prior_logvar.weight.float()
        return self.prior_mean(labels.long()).float(), self.prior_logvar(labels.long()).float()

    def elbo_terms(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example ``(log p(x|z), KL(q(z|x) || p(z)))`` with one reparameterised sample."""
        nll, kl_dims, _ = self._elbo_parts(x, labels)
        return -nll, kl_dims.sum(dim=1)

    def log_weights(self, x: torch.Tensor, k: int, chunk: int = 256,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for ``k`` reparameterised draws z_i ~ q(z|x) per example,
        ``[k, B]``, in nats; drawn ``chunk`` at a time, so memory stays at ``chunk`` decoder passes
        over the batch. Differentiable: the IWAE objective trains on them."""
        mu, logvar = self.posterior(x, labels)
        std = torch.exp(0.5 * logvar)
        p_mean, p_logvar = self.prior(labels, mu)
        log_w = []
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            eps = torch.randn(c, *mu.shape, device=mu.device)
            z = mu + std * eps                                    # [c, B, L]
            code = self.condition(z.flatten(0, 1), None if labels is None else labels.repeat(c))
            log_px = self.decoder.log_prob(x.repeat(c, *[1] * (x.dim() - 1)), code).view(c, -1)
            log_pz = -0.5 * ((z - p_mean).pow(2) / p_logvar.exp() + p_logvar + math.log(2 * math.pi)).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).sum(-1) - (0.5 * logvar).sum(-1)
            log_w.append(log_px + log_pz - log_qz)
        return torch.cat(log_w)

    @torch.no_grad()
    def iwae_nll(self, x: torch.Tensor, k: int, chunk: int = 256, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Importance-weighted estimate of -log p(x) per example, in nats (Burda et al. 2015).

        log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_i ~ q(z|x); the bound tightens
        as k grows and equals the ELBO at k = 1.
        """
        return -(torch.logsumexp(self.log_weights(x, k, chunk, labels), dim=0) - math.log(k))

    def kl_weight(self) -> float:
        return self.beta * kl_weight(self.kl_schedule, self.global_step, self.kl_warmup_steps,
                                     self.kl_cycles, self.kl_cycle_ratio)

    def _iwae_step(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The IWAE training loss: minus the importance-weighted bound with ``iwae_samples`` draws
        (mean over the batch); logs it as ``train/iwae`` beside ``train/elbo``, here the mean of
        the draws' single-sample estimates (a Monte Carlo KL), both in nats."""
        log_w = self.log_weights(x, self.iwae_samples, self.iwae_samples, labels)
        loss = -(torch.logsumexp(log_w, dim=0) - math.log(self.iwae_samples)).mean()
        if self.step_logs_due():
            self.log_train_step({"train/loss": loss, "train/iwae": loss, "train/elbo": -log_w.mean()},
                                batch_size=x.shape[0], prog_bar=("train/iwae",))
        return loss

    def _step(self, batch: Any, stage: str) -> torch.Tensor | None:
        x = batch[0]
        if stage == "train" and self.iwae_samples > 1:
            return self._iwae_step(x, self.labels_of(batch))
        nll, kl_dims, mu = self._elbo_parts(x, self.labels_of(batch))
        kl_each = kl_dims.sum(1)
        if stage == "train":
            weight = self.kl_weight()
            if self.free_bits > 0:  # the KL floor counts per dimension, on the batch's mean
                loss = weight * kl_dims.mean(0).clamp(min=self.free_bits).sum() + nll.mean()
            else:
                loss = (weight * kl_each + nll).mean()
            if self.step_logs_due():
                recon, kl = nll.mean(), kl_each.mean()
                metrics = {"train/loss": loss, "train/elbo": recon + kl, "train/recon": recon, "train/kl": kl}
                if self.kl_warmup_steps > 0 and self.kl_schedule != "constant":
                    metrics["train/kl_weight"] = weight
                self.log_train_step(metrics, batch_size=x.shape[0], prog_bar=("train/elbo",))
            return loss
        recon, kl = nll.mean(), kl_each.mean()
        elbo = recon + kl
        # val/* and test/* are averaged over all examples of the epoch (batch_size weights the
        # batches) and reduced across DDP processes once at its end
        metrics = {f"{stage}/elbo": elbo, f"{stage}/recon": recon, f"{stage}/kl": kl}
        for name, value in metrics.items():
            self.log(name, value, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True,
                     prog_bar=name == f"{stage}/elbo")
        if self.per_token:
            self.log_perplexity(f"{stage}/ppl", kl_each + nll, x)
        self._means.append(mu.detach())
        return elbo

    def _log_active_units(self, stage: str) -> None:
        """Counted over the whole split: under DDP each process holds its share of the posterior
        means, gathered here, so every process logs the same count."""
        if self._means:
            means = torch.cat(self._means)
            if self.trainer.world_size > 1:  # the shares may differ in length by a batch
                means = torch.cat(gather_all_tensors(means))
            self.log(f"{stage}/active_units", float(active_units(means)), sync_dist=True)
        self._means = []

    def on_validation_epoch_start(self) -> None:
        self._means = []

    def on_validation_epoch_end(self) -> None:
        self._log_active_units("val")

    def on_test_epoch_start(self) -> None:
        self._means, self.nll_seen = [], 0

    def on_test_epoch_end(self) -> None:
        self._log_active_units("test")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")
        x, labels = batch[0], self.labels_of(batch)
        if self.nll_examples is not None:
            x = x[: max(0, self.nll_examples - self.nll_seen)]
            labels = None if labels is None else labels[: len(x)]
        if self.nll_samples > 0 and len(x):
            self.nll_seen += len(x)
            nll = self.iwae_nll(x, self.nll_samples, chunk=self.nll_chunk, labels=labels)
            self.log("test/nll", nll.mean(), on_epoch=True, batch_size=x.shape[0], sync_dist=True)
            if self.per_token:
                self.log_perplexity("test/ppl_iw", nll, x)

    def log_perplexity(self, name: str, nats: torch.Tensor, x: torch.Tensor) -> None:
        """Add the batch to the split's perplexity ``name``; Lightning logs it at the epoch's end."""
        metric = self.perplexity[name.replace("/", "_")]
        metric.update(nats, self.decoder.units(x))
        self.log(name, metric, on_step=False, on_epoch=True)

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None, **sample: Any) -> torch.Tensor:
        """Samples for latent codes ``z`` (prior draws; a conditional model takes N(0, I) draws and
        moves them to the prior of the class in ``labels``): pixel means for images, token ids
        for text (``sample`` overrides the model's ``sample`` settings)."""
        labels = self.requested_labels(labels, len(z))
        z = z.to(self.device)
        if labels is not None:  # z are N(0, I) draws: moved to the prior of their class
            mean, logvar = self.prior(labels, z)
            z = mean + z * torch.exp(0.5 * logvar)
        return self.decode(z, labels, **sample)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None, **sample: Any) -> torch.Tensor:
        """The decoder's output for codes ``z`` (of class ``labels`` for a conditional model)."""
        return self.decoder.generate(self.condition(z, labels), **{**self.sample, **sample})

    @torch.no_grad()
    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means E_q[z|x] (E_q[z|x, y] for a conditional model)."""
        return self.posterior(x.to(self.device), labels)[0]  # one_hot moves labels to the features' device

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x, labels), labels)

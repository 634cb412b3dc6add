"""The maximum-likelihood language model: the baseline text GANs and VAEs are judged against
(Caccia et al. 2018). It trains the same decoder the text VAE uses, with no latent code.

Metric units: ``*/nll`` in nats per sentence, ``*/ppl`` per-token perplexity (``<eos>`` counted).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from genlab.metrics.perplexity import Perplexity
from genlab.models.base import GenerativeModule, OptimizerFactory
from genlab.nets.likelihoods import TokenDecoder


class LanguageModel(GenerativeModule):
    """Autoregressive model p(x) = prod_t p(x_t | x_<t), trained by teacher forcing.

    Args:
        decoder: a ``TokenDecoder`` (``log_prob(x, z)``, ``units(x)``, ``generate(z, ...)``) built
            with ``latent_dim=0`` (e.g. ``genlab.nets.text.RNNDecoder``).
        optimizer: partially applied optimizer, called with the parameters.
        scheduler: optional partially applied learning-rate scheduler (stepped per epoch).
        sample: keyword arguments of the decoder's ``generate`` (``temperature``, ``top_k``, ...).
        grad_clip: clip the gradient norm to this value (else ``trainer.gradient_clip_val`` applies).
        conditional: p(x|y), conditioned on the data's label (``data.label``): the decoder's
            code is the one-hot label, which sets its initial state.
        num_classes: the data's number of classes (``train.py`` fills it in from the data).
    """

    latent_dim = 0  # prior draws are empty vectors: every sample starts from <bos> alone

    def __init__(self, decoder: TokenDecoder, optimizer: OptimizerFactory, scheduler: Callable[..., Any] | None = None,
                 sample: dict[str, Any] | None = None, grad_clip: float | None = None, conditional: bool = False,
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["decoder", "optimizer", "scheduler"], logger=False)
        self.decoder, self.optimizer_factory, self.scheduler_factory = decoder, optimizer, scheduler
        self.sample, self.grad_clip = dict(sample or {}), grad_clip
        self.set_classes(conditional, num_classes)
        self.perplexity = nn.ModuleDict({"val_ppl": Perplexity(), "test_ppl": Perplexity()})

    def _nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return -self.decoder.log_prob(x, self.condition(x.new_zeros(x.shape[0], 0, dtype=torch.float), labels))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0]
        nll = self._nll(x, self.labels_of(batch))
        loss = nll.mean()
        if self.step_logs_due():
            self.log_train_step({"train/loss": loss, "train/nll_token": nll.sum() / self.decoder.units(x).sum()},
                                batch_size=x.shape[0], prog_bar=("train/loss",))
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        x = batch[0]
        nll = self._nll(x, self.labels_of(batch))
        self.log(f"{stage}/nll", nll.mean(), on_epoch=True, batch_size=x.shape[0], sync_dist=True, prog_bar=True)
        perplexity = self.perplexity[f"{stage}_ppl"]
        perplexity.update(nll, self.decoder.units(x))
        self.log(f"{stage}/ppl", perplexity, on_step=False, on_epoch=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None, **sample: Any) -> torch.Tensor:
        """Token ids for ``len(z)`` sentences (``z`` is empty: only its length counts; a conditional
        model draws each for its class in ``labels``, every class in turn when none is given)."""
        labels = self.requested_labels(labels, len(z))
        return self.decoder.generate(self.condition(z.to(self.device).float(), labels), **{**self.sample, **sample})

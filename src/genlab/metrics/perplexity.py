"""Corpus perplexity from nats: exp(total nats / total tokens) over a whole split."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class Perplexity(Metric):
    """Per-token perplexity of a split, from per-example negative log-likelihoods (or bounds on
    them, such as the negative ELBO) in nats and the tokens each example predicts.

    It is exp(sum of nats / sum of tokens) over every example, not a mean of batch perplexities;
    torchmetrics sums both totals across DDP processes before ``compute``.
    (``torchmetrics.text.Perplexity`` takes logits and targets; a VAE's bound is not one.)"""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nats", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, nats: torch.Tensor, tokens: torch.Tensor) -> None:
        self.nats += nats.detach().double().sum()
        self.tokens += tokens.double().sum()

    def compute(self) -> torch.Tensor:
        return torch.exp((self.nats / self.tokens).clamp(max=700.0)).float()

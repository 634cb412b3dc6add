"""Decoders that own their likelihood, so one VAE objective serves pixels and tokens alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def as_float32(t: torch.Tensor) -> torch.Tensor:
    """``t.float()``, which returns ``t`` itself when it is float32 already, without dispatching an
    operator in that case: the losses take their inputs in float32 for mixed precision, and in
    32-bit training every one of these calls is a no-op that costs the host an operator."""
    return t if t.dtype == torch.float32 else t.float()


class BernoulliDecoder(nn.Module):
    """Base for decoders whose ``forward(z)`` returns Bernoulli logits shaped like the data.

    With targets in [0, 1] that are not binary (grey pixels) ``log_prob`` is the classic
    "BCE" reconstruction term used by most VAE code, e.g. ``pytorch/examples``.
    """

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over all pixels: one value per example, in nats."""
        logits = self(z)
        # BCE-with-logits is autocast-safe and runs in float32 under mixed precision.
        nll = F.binary_cross_entropy_with_logits(as_float32(logits), as_float32(x), reduction="none")
        return -nll.flatten(1).sum(1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: pixel probabilities."""
        return torch.sigmoid(self(z).float())

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """What a sample grid shows: the pixel probabilities."""
        return self.mean(z)

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(self.mean(z))

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


def decoder_nll(decoder: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """-log p(x | z) per example, in nats, from a decoder that owns its likelihood: its ``nll``
    where it has one, else ``-decoder.log_prob(x, z)``.

    The models minimise the negative log-likelihood. Taken as ``-log_prob`` it costs a negation
    in the forward pass and two in the backward pass (the log-likelihood's own, and the one a
    subtraction of it passes back): three operators a step, and on a GPU three kernels, that
    give the same numbers as ``nll`` (a negation is exact in floating point)."""
    nll = getattr(decoder, "nll", None)
    return nll(x, z) if nll is not None else -decoder.log_prob(x, z)


class BernoulliDecoder(nn.Module):
    """Base for decoders whose ``forward(z)`` returns Bernoulli logits shaped like the data.

    With targets in [0, 1] that are not binary (grey pixels) ``nll`` is the classic "BCE"
    reconstruction term used by most VAE code, e.g. ``pytorch/examples``.
    """

    def nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) summed over all pixels: one value per example, in nats."""
        logits = self(z)
        # BCE-with-logits is autocast-safe and runs in float32 under mixed precision.
        nll = F.binary_cross_entropy_with_logits(as_float32(logits), as_float32(x), reduction="none")
        return nll.flatten(1).sum(1)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over all pixels: one value per example, in nats."""
        return -self.nll(x, z)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: pixel probabilities."""
        return torch.sigmoid(self(z).float())

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """What a sample grid shows: the pixel probabilities."""
        return self.mean(z)

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(self.mean(z))

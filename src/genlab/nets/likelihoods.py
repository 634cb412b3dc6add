"""Decoders that own their likelihood, so one VAE objective serves pixels and tokens alike."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError


@runtime_checkable
class Decoder(Protocol):
    """What the VAE and the language model need of a decoder."""

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per example, in nats (summed over pixels or tokens)."""

    def generate(self, z: torch.Tensor, **sample: Any) -> torch.Tensor:
        """What a sample of ``z`` shows: pixel means for images, token ids for text."""


@runtime_checkable
class TokenDecoder(Decoder, Protocol):
    """A decoder over token sequences: its models report per-token perplexities."""

    def units(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens predicted per example: the denominator of perplexity."""


class BernoulliDecoder(nn.Module):
    """Base for decoders whose ``forward(z)`` returns Bernoulli logits shaped like the data.

    With targets in [0, 1] that are not binary (grey pixels) ``-log_prob`` is the classic "BCE"
    reconstruction term used by most VAE code, e.g. ``pytorch/examples``.
    """

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over all pixels: one value per example, in nats."""
        # in float32: BCE-with-logits is autocast-safe and the sum over 784 pixels needs the precision
        nll = F.binary_cross_entropy_with_logits(self(z).float(), x.float(), reduction="none")
        return -nll.flatten(1).sum(1)

    def init_output_bias(self, mean: torch.Tensor) -> None:
        """Start the logits' bias at the log-odds of ``mean``, pixel probabilities shaped like one
        example (``model.init_output_bias``); only decoders with a bias per pixel can."""
        raise GenlabError(f"model.init_output_bias needs a bias per pixel in the decoder's last layer; "
                          f"{type(self).__name__} has none (the MLP decoder has).")

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: pixel probabilities."""
        return torch.sigmoid(self(z).float())

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """What a sample grid shows: the pixel probabilities."""
        return self.mean(z)

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(self.mean(z))

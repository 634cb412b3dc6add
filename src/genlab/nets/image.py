"""Encoders and decoders for small single-channel images (MNIST-sized, 28x28)."""

from __future__ import annotations

from typing import Sequence

import math

import torch
from torch import nn

from genlab.nets.likelihoods import BernoulliDecoder


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """Base for encoders returning the mean and log-variance of a diagonal Gaussian q(z|x)."""

    body: nn.Module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.body(x).chunk(2, dim=1)
        return mu, logvar


class MLPEncoder(GaussianEncoder):
    """Fully connected encoder: 784 -> hidden... -> 2 x latent (the classic 784-256-32)."""

    def __init__(self, latent_dim: int = 32, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), mlp([math.prod(image_shape), *hidden_dims, 2 * latent_dim]))


class MLPDecoder(BernoulliDecoder):
    """Fully connected decoder: latent -> hidden... -> 784 Bernoulli logits (32-256-784)."""

    def __init__(self, latent_dim: int = 32, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.body = mlp([latent_dim, *hidden_dims, math.prod(image_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)


class ConvEncoder(GaussianEncoder):
    """Two stride-2 convolutions (28 -> 14 -> 7), then a linear layer to 2 x latent."""

    def __init__(self, latent_dim: int = 32, channels: Sequence[int] = (32, 64), hidden_dim: int = 256, in_channels: int = 1):
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )


class ConvDecoder(BernoulliDecoder):
    """Mirror of ``ConvEncoder``: linear to 7x7 maps, two stride-2 transposed convolutions."""

    def __init__(self, latent_dim: int = 32, channels: Sequence[int] = (64, 32), hidden_dim: int = 256, out_channels: int = 1):
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, c1 * 7 * 7), nn.ReLU(inplace=True),
            nn.Unflatten(1, (c1, 7, 7)),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c2, out_channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)

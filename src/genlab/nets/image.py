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


# ----------------------------------------------------------------------------- GAN nets
# Generators end in tanh (images in [-1, 1]); discriminators return one logit per image.


class MLPGenerator(nn.Module):
    """The original GAN paper's MNIST shape: noise 100 -> 256 -> 784, tanh output."""

    def __init__(self, latent_dim: int = 100, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        sizes = [latent_dim, *hidden_dims]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Linear(sizes[-1], math.prod(image_shape)), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """784 -> 256 -> 1 logit, LeakyReLU(0.2)."""

    def __init__(self, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28), spectral_norm: bool = False):
        super().__init__()
        sizes = [math.prod(image_shape), *hidden_dims]
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [wrap(nn.Linear(n_in, n_out)), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(wrap(nn.Linear(sizes[-1], 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)


class DCGANGenerator(nn.Module):
    """DCGAN generator for 28x28: z -> 7x7 maps -> 14x14 -> 28x28 (transposed convs, BatchNorm, ReLU)."""

    def __init__(self, latent_dim: int = 100, channels: Sequence[int] = (128, 64), out_channels: int = 1):
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            nn.ConvTranspose2d(latent_dim, c1, 7, 1, 0, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c2, out_channels, 4, 2, 1), nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator for 28x28: strided convs 28 -> 14 -> 7, then a 7x7 conv to one logit.

    No BatchNorm by default (it couples the examples of a batch and is fragile under DDP);
    ``spectral_norm=True`` constrains each layer's Lipschitz constant instead.
    """

    def __init__(self, channels: Sequence[int] = (64, 128), in_channels: int = 1, spectral_norm: bool = False):
        super().__init__()
        c1, c2 = channels
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        self.body = nn.Sequential(
            wrap(nn.Conv2d(in_channels, c1, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            wrap(nn.Conv2d(c1, c2, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            wrap(nn.Conv2d(c2, 1, 7, 1, 0)), nn.Flatten(0),
        )
        if not spectral_norm:
            self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)

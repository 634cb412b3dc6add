"""Small nets on latent codes: a latent GAN's generator (noise -> code) and critic (code -> score)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _mlp(sizes: Sequence[int], norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.LayerNorm(n_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class CodeGenerator(nn.Module):
    """MLP from noise ``[B, latent_dim]`` to codes ``[B, code_dim]`` (layer-normalised hidden layers)."""

    def __init__(self, latent_dim: int = 32, code_dim: int = 64, hidden_dims: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.body = _mlp([latent_dim, *hidden_dims, code_dim], norm=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class CodeCritic(nn.Module):
    """MLP from codes to one score each; no normalisation layers, so WGAN-GP's per-example
    gradient penalty stays valid."""

    def __init__(self, code_dim: int = 64, hidden_dims: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.body = _mlp([code_dim, *hidden_dims, 1], norm=False)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.body(code).squeeze(-1)

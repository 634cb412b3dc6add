"""Small nets on latent codes: a latent GAN's generator (noise -> code) and critic (code -> score)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from genlab.nets.image import mlp


class CodeGenerator(nn.Module):
    """MLP from noise ``[B, latent_dim]`` to codes ``[B, code_dim]`` (layer-normalised hidden layers)."""

    def __init__(self, latent_dim: int = 32, code_dim: int = 64, hidden_dims: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.body = mlp([latent_dim, *hidden_dims, code_dim], "leaky_relu", norm=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class CodeCritic(nn.Module):
    """MLP from codes to one score each; no normalisation layers, so WGAN-GP's per-example
    gradient penalty stays valid."""

    def __init__(self, code_dim: int = 64, hidden_dims: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.body = mlp([code_dim, *hidden_dims, 1], "leaky_relu")

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.body(code).squeeze(-1)

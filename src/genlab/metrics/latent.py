"""Statistics of a latent space."""

from __future__ import annotations

import torch


def active_units(means: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions in use (Burda et al. 2015): those whose posterior mean E_q[z|x] varies
    over the data, Cov_x(E_q[z|x]) > ``threshold``. ``means``: ``[N, L]`` posterior means."""
    if len(means) < 2:
        return 0
    return int((means.float().var(dim=0) > threshold).sum())

"""Image grids as PNG files."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """A grid of ``images`` (``[N, C, H, W]``, values in [0, 1]) as a PNG, 2-pixel white padding.

    Grey images (``C == 1``) are written as a greyscale PNG with the same grey values:
    ``torchvision.utils.save_image`` repeats the channel three times, which doubles the file of a
    grid of MNIST digits and slows the write."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)
    # rounded as save_image does
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    # a 2-D uint8 array becomes a greyscale (mode L) picture, an [H, W, 3] one an RGB picture
    picture = Image.fromarray((pixels[0] if images.shape[1] == 1 else pixels.permute(1, 2, 0)).numpy())
    path = Path(path)
    picture.save(path)
    return path

"""Image grids as PNG files, and random shifts of image batches."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid


def random_shift(x: torch.Tensor, max_dy: int, max_dx: int, fill: float) -> torch.Tensor:
    """Each image of ``x`` (``[B, C, H, W]``) moved by its own whole number of pixels, up to
    ``max_dy`` down or up and ``max_dx`` right or left, the uncovered border set to ``fill``.
    Differentiable in ``x``, and drawn from torch's generator on ``x``'s device."""
    b, _, h, w = x.shape
    dy = torch.randint(-max_dy, max_dy + 1, (b,), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (b,), device=x.device)
    # every H x W window of the padded images, [B, C, 2 max_dy + 1, 2 max_dx + 1, H, W] (a view);
    # window (max_dy + dy, max_dx + dx) is the image moved by (-dy, -dx)
    windows = torch.nn.functional.pad(x, (max_dx, max_dx, max_dy, max_dy), value=fill).unfold(2, h, 1).unfold(3, w, 1)
    return windows[torch.arange(b, device=x.device), :, dy + max_dy, dx + max_dx]


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, row_labels: list[str] | None = None) -> Path:
    """A grid of ``images`` (``[N, C, H, W]``, values in [0, 1]) as a PNG, 2-pixel white padding;
    ``row_labels`` are written in a margin left of the rows (e.g. class names).

    Grey images (``C == 1``) are written as a greyscale PNG with the same grey values:
    ``torchvision.utils.save_image`` repeats the channel three times, which doubles the file of a
    grid of MNIST digits and slows the write."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)
    # rounded as save_image does
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    # a 2-D uint8 array becomes a greyscale (mode L) picture, an [H, W, 3] one an RGB picture
    picture = Image.fromarray((pixels[0] if images.shape[1] == 1 else pixels.permute(1, 2, 0)).numpy())
    if row_labels:
        picture = labelled_rows(picture, row_labels, row_height=images.shape[2] + 2)
    path = Path(path)
    picture.save(path)
    return path


def labelled_rows(picture: Image.Image, labels: list[str], row_height: int) -> Image.Image:
    """``picture`` with a white margin on the left holding one label per row (PIL's default font)."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(picture)
    width = max(int(draw.textlength(label)) for label in labels) + 6
    out = Image.new(picture.mode, (picture.width + width, picture.height), "white")
    out.paste(picture, (width, 0))
    draw = ImageDraw.Draw(out)
    for row, label in enumerate(labels):
        draw.text((2, 2 + row * row_height + (row_height - 11) // 2), label, fill="black")
    return out

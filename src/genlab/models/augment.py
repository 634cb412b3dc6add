"""Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020).

The discriminator sees real and generated images through the same random transformations, in
both the discriminator's and the generator's steps; they are differentiable, so the generator
learns through them. With few training images (a few thousand) the discriminator then cannot
memorise them and keeps giving the generator a useful signal. Images are in the generator's
[-1, 1] range, ``[B, C, H, W]``; every image of a batch draws its own parameters.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from genlab.utils.errors import GenlabError
from genlab.utils.images import random_shift


def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness shifted by U(-0.5, 0.5), then contrast scaled by U(0.5, 1.5) around each image's
    mean (DiffAugment's ``color`` policy without saturation, which grey images do not have)."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Each image moved by up to ``ratio`` of its size in each direction, the border padded with
    -1 (the background of the [-1, 1] range)."""
    _, _, h, w = x.shape
    return random_shift(x, int(h * ratio + 0.5), int(w * ratio + 0.5), fill=-1.0)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """A square of ``ratio`` of each side, at a random place per image, set to 0 (mid-grey)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout,
}


def parse_policy(policy: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"color,translation,cutout"`` (or a list) as the names of the augmentations to apply, in
    order; ``None`` or ``""``: none."""
    if not policy:
        return ()
    names = tuple(p.strip() for p in (policy.split(",") if isinstance(policy, str) else policy) if p.strip())
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise GenlabError(f"model.diffaugment: {unknown[0]!r} is unknown; choose from {', '.join(AUGMENTS)} "
                          "(comma-separated), e.g. color,translation,cutout.")
    return names


def diff_augment(x: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """``x`` through the augmentations named in ``policy``, each with fresh random parameters."""
    for name in policy:
        x = AUGMENTS[name](x)
    return x

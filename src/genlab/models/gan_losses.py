"""The adversarial games, as (discriminator loss, generator loss) pairs on raw logits."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from genlab.utils.errors import GenlabError

LOSSES = ("nonsaturating", "hinge", "wgan-gp")


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a half-precision type (an autocast output), else as it is: the
    losses and penalties are taken in at least single precision, and a game played in float64 (the
    tests that compare it with textbook loops) keeps float64 to the end."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise GenlabError(f"model.loss={name!r} is unknown; choose one of {', '.join(LOSSES)}.")
    return name


def d_loss(name: str, real: torch.Tensor, fake: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """Discriminator loss from its logits on real and (detached) fake images.

    ``nonsaturating``: the BCE game of Goodfellow et al. 2014, from logits (autocast-safe);
    ``real_label`` < 1 is one-sided label smoothing. ``hinge``: Lim & Ye 2017 / Miyato et al. 2018.
    ``wgan-gp``: the critic's Wasserstein estimate (add ``gradient_penalty``).
    """
    real, fake = at_least_float32(real), at_least_float32(fake)
    if name == "nonsaturating":
        return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_label))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if name == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()


def g_loss(name: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from the discriminator's logits on fresh fakes."""
    fake = at_least_float32(fake)
    if name == "nonsaturating":
        return F.softplus(-fake).mean()  # = BCE(D(G(z)), 1): maximise log D(G(z))
    return -fake.mean()


def e_loss(name: str, real: torch.Tensor) -> torch.Tensor:
    """Adversarial loss of an encoder whose outputs are the *real* side (a latent GAN's codes):
    it moves them towards what the discriminator takes for fake, the mirror of ``g_loss``."""
    real = at_least_float32(real)
    if name == "nonsaturating":
        return F.softplus(real).mean()  # = BCE(D(E(x)), 0)
    return real.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. 2017: E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates.

    Computed in at least float32 with autocast off: the input gradient of a half-precision forward
    underflows easily.
    """
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * at_least_float32(real) + (1 - eps) * at_least_float32(fake)).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        out = critic(x_hat)
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: E[||grad_x D(x)||_2^2] on real images (the discriminator is
    pushed to be flat on the data). In at least float32 with autocast off, as ``gradient_penalty``."""
    x = at_least_float32(real.detach()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        out = critic(x)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def mean_output(name: str, logits: torch.Tensor) -> torch.Tensor:
    """What ``d_real``/``d_fake`` report: mean probability for the BCE game, mean score otherwise."""
    logits = at_least_float32(logits.detach())
    return torch.sigmoid(logits).mean() if name == "nonsaturating" else logits.mean()

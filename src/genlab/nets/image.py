"""Encoders and decoders for small single-channel images (MNIST-sized, 28x28).

Every net takes ``num_classes`` (0: unconditional) for class-conditional models: encoders and
discriminators then take the labels as a second input, decoders and generators a latent code
with the one-hot label appended (``genlab.models.base.GenerativeModule.condition``), so their
first layer is ``num_classes`` inputs wider.
"""

from __future__ import annotations

from typing import Callable, Sequence

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.nets.likelihoods import BernoulliDecoder
from genlab.utils.errors import GenlabError


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Labels ``[B]`` as one-hot rows in the dtype and on the device of ``like``."""
    return F.one_hot(labels.long(), num_classes).to(device=like.device, dtype=like.dtype)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True), "silu": nn.SiLU, "gelu": nn.GELU, "elu": nn.ELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),  # DCGAN's slope
}


def mlp(sizes: Sequence[int], activation: str = "relu", norm: bool = False) -> nn.Sequential:
    """Linear layers with ``activation`` (a name in ``ACTIVATIONS``) between them, none after the
    last; ``norm``: a ``LayerNorm`` before each activation."""
    if activation not in ACTIVATIONS:
        raise GenlabError(f"activation={activation!r} is unknown; choose one of {', '.join(ACTIVATIONS)}.")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.LayerNorm(n_out))
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """Base for encoders returning the mean and log-variance of a diagonal Gaussian q(z|x) or,
    conditional (``num_classes`` > 0), q(z|x, y): the one-hot label joins the flattened image
    features at layer ``label_at`` of ``body`` (the conditional VAE of Sohn et al. 2015)."""

    body: nn.Sequential
    label_at: int
    num_classes: int = 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.num_classes:
            h = self.body[: self.label_at](x)
            h = self.body[self.label_at :](torch.cat([h, one_hot(labels, self.num_classes, h)], dim=1))
        else:
            h = self.body(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar


class MLPEncoder(GaussianEncoder):
    """Fully connected encoder: 784 -> hidden... -> 2 x latent (the classic 784-256-32), with
    ``activation`` (relu, silu, gelu, elu, leaky_relu) after each hidden layer."""

    label_at = 1

    def __init__(self, latent_dim: int = 32, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28),
                 num_classes: int = 0, activation: str = "relu"):
        super().__init__()
        self.num_classes = num_classes
        sizes = [math.prod(image_shape) + num_classes, *hidden_dims, 2 * latent_dim]
        self.body = nn.Sequential(nn.Flatten(), mlp(sizes, activation))


class MLPDecoder(BernoulliDecoder):
    """Fully connected decoder: latent -> hidden... -> 784 Bernoulli logits (32-256-784), with
    ``activation`` after each hidden layer."""

    def __init__(self, latent_dim: int = 32, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28),
                 num_classes: int = 0, activation: str = "relu"):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.body = mlp([latent_dim + num_classes, *hidden_dims, math.prod(image_shape)], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)

    @torch.no_grad()
    def init_output_bias(self, mean: torch.Tensor) -> None:
        # probabilities clamped to [1e-3, 1 - 1e-3]: log-odds within +-6.9 for pixels always 0 or 1
        self.body[-1].bias.copy_(torch.logit(mean.reshape(-1).float(), eps=1e-3))


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions that keep the shape: a pre-activation
    residual block (He et al. 2016). Stacked, they deepen the conv VAE's nets and the DCGAN
    discriminator at one resolution without making them harder to optimise; ``wrap`` is applied to
    each convolution (the discriminator's spectral norm)."""

    def __init__(self, channels: int, wrap=lambda conv: conv):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), wrap(nn.Conv2d(channels, channels, 3, padding=1)),
            nn.ReLU(), wrap(nn.Conv2d(channels, channels, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def residual_blocks(channels: int, n: int, wrap=lambda conv: conv) -> list[nn.Module]:
    """``n`` residual blocks; ``wrap`` is applied to each of their convolutions (e.g. spectral norm)."""
    return [ResidualBlock(channels, wrap) for _ in range(n)]


class ConvEncoder(GaussianEncoder):
    """Two stride-2 convolutions (28 -> 14 -> 7), each followed by ``res_blocks`` residual blocks
    (none by default), then a linear layer to 2 x latent."""

    def __init__(self, latent_dim: int = 32, channels: Sequence[int] = (32, 64), hidden_dim: int = 256, in_channels: int = 1,
                 num_classes: int = 0, res_blocks: int = 0):
        super().__init__()
        c1, c2 = channels
        self.num_classes = num_classes
        layers = [
            nn.Conv2d(in_channels, c1, 4, stride=2, padding=1), nn.ReLU(inplace=True), *residual_blocks(c1, res_blocks),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(inplace=True), *residual_blocks(c2, res_blocks),
            nn.Flatten(),
        ]
        self.label_at = len(layers)  # the label joins the flattened 7x7 maps
        self.body = nn.Sequential(
            *layers, nn.Linear(c2 * 7 * 7 + num_classes, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )


class ConvDecoder(BernoulliDecoder):
    """Mirror of ``ConvEncoder``: linear to 7x7 maps, two stride-2 transposed convolutions, each
    resolution's maps through ``res_blocks`` residual blocks before its upsampling."""

    def __init__(self, latent_dim: int = 32, channels: Sequence[int] = (64, 32), hidden_dim: int = 256, out_channels: int = 1,
                 num_classes: int = 0, res_blocks: int = 0):
        super().__init__()
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Linear(latent_dim + num_classes, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, c1 * 7 * 7), nn.ReLU(inplace=True),
            nn.Unflatten(1, (c1, 7, 7)), *residual_blocks(c1, res_blocks),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(inplace=True), *residual_blocks(c2, res_blocks),
            nn.ConvTranspose2d(c2, out_channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


# ----------------------------------------------------------------------------- GAN nets
# Generators end in tanh (images in [-1, 1]); discriminators return one logit per image.


class MLPGenerator(nn.Module):
    """The original GAN paper's MNIST shape: noise 100 -> 256 -> 784, tanh output."""

    def __init__(self, latent_dim: int = 100, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28),
                 num_classes: int = 0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        sizes = [latent_dim + num_classes, *hidden_dims]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Linear(sizes[-1], math.prod(image_shape)), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)


class ProjectionDiscriminator(nn.Module):
    """Base of the discriminators: ``body`` maps images to one logit per image; conditional
    (``num_classes`` > 0) adds the projection of Miyato & Koyama 2018, the inner product of a
    learned class embedding with the features ``body[:features_at]`` makes, summed over space;
    ``aux_classifier`` adds a linear class head on those features (AC-GAN, Odena et al. 2017),
    whose logits ``forward(..., classes=True)`` returns beside the real/fake logit."""

    body: nn.Sequential
    features_at: int

    def add_projection(self, num_classes: int, feature_dim: int, wrap, aux_classifier: bool = False) -> None:
        self.embed = self.aux = None
        if num_classes:
            embed = nn.Embedding(num_classes, feature_dim)
            nn.init.xavier_uniform_(embed.weight)
            self.embed = wrap(embed)
            if aux_classifier:
                self.aux = wrap(nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                classes: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.embed is None:
            return self.body(x).flatten()
        h = self.body[: self.features_at](x)
        pooled = h.flatten(2).sum(2) if h.dim() > 2 else h
        logit = self.body[self.features_at :](h).flatten() + (self.embed(labels.long()) * pooled).sum(1)
        return (logit, self.aux(pooled)) if classes else logit


def spectral_norm_if(enabled: bool):
    return nn.utils.parametrizations.spectral_norm if enabled else (lambda m: m)


class MLPDiscriminator(ProjectionDiscriminator):
    """784 -> 256 -> 1 logit, LeakyReLU(0.2)."""

    def __init__(self, hidden_dims: Sequence[int] = (256,), image_shape: Sequence[int] = (1, 28, 28), spectral_norm: bool = False,
                 num_classes: int = 0, aux_classifier: bool = False):
        super().__init__()
        sizes = [math.prod(image_shape), *hidden_dims]
        wrap = spectral_norm_if(spectral_norm)
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [wrap(nn.Linear(n_in, n_out)), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(wrap(nn.Linear(sizes[-1], 1)))
        self.body = nn.Sequential(*layers)
        self.features_at = len(layers) - 1
        self.add_projection(num_classes, sizes[-1], wrap, aux_classifier)


class DCGANGenerator(nn.Module):
    """DCGAN generator for 28x28: z -> 7x7 maps -> 14x14 -> 28x28 (transposed convs, BatchNorm, ReLU).
    ``res_blocks`` residual blocks after the 7x7 and the 14x14 maps deepen it at both resolutions,
    as the discriminator's ``res_blocks`` deepen that. ``channels`` are the feature maps at 7x7 and
    14x14; a third entry adds that many maps at 28x28 (BatchNorm, ReLU), from which a 3x3
    convolution draws the image, instead of the last transposed convolution drawing it directly."""

    def __init__(self, latent_dim: int = 100, channels: Sequence[int] = (128, 64), out_channels: int = 1,
                 num_classes: int = 0, res_blocks: int = 0):
        super().__init__()
        if len(channels) not in (2, 3):
            raise ValueError(f"channels: the feature maps at 7x7 and 14x14 (and 28x28), got {list(channels)}")
        c1, c2, *full = channels
        inputs = latent_dim + num_classes

        def upsample(n_in: int, n_out: int) -> list[nn.Module]:  # twice the side: transposed conv, BatchNorm, ReLU
            return [nn.ConvTranspose2d(n_in, n_out, 4, 2, 1, bias=False), nn.BatchNorm2d(n_out), nn.ReLU(inplace=True)]

        if full:
            head = [*upsample(c2, full[0]), nn.Conv2d(full[0], out_channels, 3, 1, 1)]
        else:
            head = [nn.ConvTranspose2d(c2, out_channels, 4, 2, 1)]
        self.body = nn.Sequential(
            nn.Unflatten(1, (inputs, 1, 1)),
            nn.ConvTranspose2d(inputs, c1, 7, 1, 0, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            *residual_blocks(c1, res_blocks),
            *upsample(c1, c2),
            *residual_blocks(c2, res_blocks),
            *head, nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class DCGANDiscriminator(ProjectionDiscriminator):
    """DCGAN discriminator for 28x28: strided convs 28 -> 14 -> 7, then a 7x7 conv to one logit.

    No BatchNorm by default (it couples the examples of a batch and is fragile under DDP);
    ``spectral_norm=True`` constrains each layer's Lipschitz constant instead. ``res_blocks`` residual
    blocks after each strided convolution deepen it at both resolutions, as in ``ConvEncoder``.
    """

    def __init__(self, channels: Sequence[int] = (64, 128), in_channels: int = 1, spectral_norm: bool = False,
                 num_classes: int = 0, aux_classifier: bool = False, res_blocks: int = 0):
        super().__init__()
        c1, c2 = channels
        wrap = spectral_norm_if(spectral_norm)
        features = [
            wrap(nn.Conv2d(in_channels, c1, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True), *residual_blocks(c1, res_blocks, wrap),
            wrap(nn.Conv2d(c1, c2, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True), *residual_blocks(c2, res_blocks, wrap),
        ]
        self.features_at = len(features)  # the 7x7 maps
        self.body = nn.Sequential(*features, wrap(nn.Conv2d(c2, 1, 7, 1, 0)), nn.Flatten(0))
        if not spectral_norm:
            self.apply(dcgan_init)
        self.add_projection(num_classes, c2, wrap, aux_classifier)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)

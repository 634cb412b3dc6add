"""LightningModules, one per training objective."""

from genlab.models.gan import GAN
from genlab.models.vae import VAE

__all__ = ["GAN", "VAE"]

"""LightningModules, one per training objective."""

from genlab.models.gan import GAN
from genlab.models.latent_gan import LatentGAN
from genlab.models.lm import LanguageModel
from genlab.models.vae import VAE

__all__ = ["GAN", "LanguageModel", "LatentGAN", "VAE"]

"""LightningModules, one per training objective."""

from genlab.models.vae import VAE

__all__ = ["VAE"]

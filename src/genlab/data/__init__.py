"""LightningDataModules: images (MNIST, Fashion-MNIST)."""

from genlab.data.mnist import MNISTDataModule

__all__ = ["MNISTDataModule"]

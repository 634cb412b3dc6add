"""LightningDataModules: images (MNIST, Fashion-MNIST) and text (corpora, tokenizers)."""

from genlab.data.mnist import MNISTDataModule
from genlab.data.text import TextDataModule

__all__ = ["MNISTDataModule", "TextDataModule"]

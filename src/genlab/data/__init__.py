"""LightningDataModules: images (MNIST, Fashion-MNIST) and text (corpora, tokenizers).

The modules are imported when first named (``genlab.data.MNISTDataModule``), so that the
torch-free parts (``checks``, ``tokenizers``, ``text_corpora``) load without torch."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genlab.data.mnist import MNISTDataModule
    from genlab.data.text import TextDataModule

__all__ = ["MNISTDataModule", "TextDataModule"]
_HOME = {"MNISTDataModule": "genlab.data.mnist", "TextDataModule": "genlab.data.text"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

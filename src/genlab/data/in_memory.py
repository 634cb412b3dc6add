"""What genlab's data modules share: splits held in memory as datasets that hand out whole
batches (``__getitems__``), and the loader over them."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler


def batch_indices(indices: Sequence[int] | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """A batch's indices as an int64 tensor on ``device`` (default: the host), for
    ``index_select``. A list of Python ints is converted through numpy, faster than
    ``torch.as_tensor``. To a GPU they travel through pinned memory: a copy from ordinary host
    memory would wait for all the work queued on the GPU."""
    if isinstance(indices, torch.Tensor):
        idx = indices if indices.dtype == torch.int64 else indices.long()  # no operator when it is already
    else:
        idx = torch.from_numpy(np.fromiter(indices, dtype=np.int64, count=len(indices)))
    if device is not None and device.type == "cuda" and idx.device != device:
        idx = idx.pin_memory().to(device, non_blocking=True)
    return idx


def keep_batch(batch: Any) -> Any:
    """Collate function for datasets with ``__getitems__``: the batch is already stacked."""
    return batch


def epoch_order(n: int, epoch: int, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> torch.Tensor:
    """This process's indices of an epoch, int64 on the host: a permutation that depends only on
    ``seed`` and ``epoch`` (not on the global random state, so a resumed run sees the batches an
    uninterrupted one sees), or ``0..n-1`` in order. Under DDP (``num_replicas`` > 1) the order is
    padded with its first indices to a multiple of ``num_replicas`` and dealt out in turn, as
    torch's ``DistributedSampler`` does: step k's batches of all the processes together are then
    step k's batch of one process with the batch size times the number of processes."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        order = torch.arange(n)
    if num_replicas == 1:
        return order
    total = math.ceil(n / num_replicas) * num_replicas
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
    return order[rank:total:num_replicas]


class EpochBatches(Sampler[torch.Tensor]):
    """The batches of one pass over a split: slices of the pass's ``epoch_order``, held where the
    dataset is (``device``), without the first ``skip`` of them. ``epoch`` and ``skip`` are set by
    ``InMemoryLoader`` before each pass; ``skip`` holds for that pass only."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 device: torch.device | None = None) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.num_replicas, self.rank, self.device = num_replicas, rank, device
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.n / self.num_replicas) / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        skip, self.skip = self.skip, 0
        order = epoch_order(self.n, self.epoch, self.shuffle, self.seed, self.num_replicas, self.rank)
        if self.device is not None:
            order = batch_indices(order, torch.device(self.device))
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            yield order[start : start + self.batch_size]


class InMemoryLoader:
    """The loader of a split held in memory: an iterable of batches with a length, which Lightning
    takes as it is (it is no ``DataLoader``, so Lightning puts no sampler of its own in it; the
    order, the share of each DDP process and the resume are genlab's).

    Each pass reads the epoch (``epoch_of``, the trainer's current epoch) at its first batch.
    Without worker processes or pinned memory it calls the dataset's ``__getitems__`` once per
    batch; with them it runs a ``DataLoader`` over the same batches.

    It keeps its place in the epoch through Lightning's interface for stateful loaders
    (``state_dict``/``load_state_dict``, saved in every checkpoint): the epoch and the batches
    handed out in it. After a restart from a checkpoint written mid-epoch (a SIGTERM, a checkpoint
    every N steps), the first pass over that epoch leaves out the batches already trained (with
    workers, they are never fetched) and goes on with the rest of the epoch's order."""

    def __init__(self, dataset: Dataset, batches: EpochBatches, epoch_of: Callable[[], int] = lambda: 0,
                 num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> None:
        self.dataset, self.batches, self.epoch_of = dataset, batches, epoch_of
        self.fetcher = None
        if num_workers > 0 or pin_memory:
            self.fetcher = DataLoader(
                dataset, batch_sampler=batches, collate_fn=keep_batch, num_workers=num_workers, pin_memory=pin_memory,
                persistent_workers=num_workers > 0,
                # the workers' seeds come from the loader's own generator, not from the global random state
                generator=torch.Generator().manual_seed(seed),
            )
        self.handed_out = 0  # batches of the current pass
        self.resume: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.batches.epoch, "batches": self.handed_out}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # batches None: from a loader that did not count them; ``ResumeState`` warns when the
        # checkpoint was written mid-epoch
        self.resume = state if state.get("batches") is not None else None

    def __iter__(self) -> Iterator[Any]:
        # a generator: the epoch is read at the first batch, when the trainer has set it
        epoch = self.epoch_of()
        resume, self.resume = self.resume, None
        # the batches handed out before the checkpoint, if this pass is over the same epoch (else the
        # restart came at the end of that epoch, and this pass is a new one)
        skip = int(resume["batches"]) if resume is not None and resume["epoch"] == epoch else 0
        self.handed_out = skip
        self.batches.epoch, self.batches.skip = epoch, skip
        if self.fetcher is not None:
            batches = iter(self.fetcher)
        else:
            batches = (self.dataset.__getitems__(indices) for indices in self.batches)
        for batch in batches:
            self.handed_out += 1
            yield batch


class InMemoryDataModule(LightningDataModule):
    """Loaders over ``self._splits`` (``train``/``val``/``test`` datasets): shuffled training
    batches of ``batch_size``, evaluation batches of ``eval_batch_size`` in order. Under DDP each
    process gets its share; with ``trainer.overfit_batches`` the training batches come in order,
    as Lightning does for its own loaders."""

    _splits: dict[str, Dataset]
    seed: int
    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    pin_memory: bool = False

    def _loader(self, split: str, shuffle: bool) -> InMemoryLoader:
        dataset = self._splits[split]
        device = getattr(dataset, "device", torch.device("cpu"))
        trainer = self.trainer
        shard = (getattr(trainer, "distributed_sampler_kwargs", None) or {}) if trainer is not None else {}
        batches = EpochBatches(
            len(dataset), self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle and not getattr(trainer, "overfit_batches", 0), seed=self.seed,
            num_replicas=shard.get("num_replicas", 1), rank=shard.get("rank", 0), device=device,
        )
        return InMemoryLoader(dataset, batches, epoch_of=lambda: getattr(self.trainer, "current_epoch", 0),
                              num_workers=self.num_workers, pin_memory=self.pin_memory and device.type == "cpu",
                              seed=self.seed)

    def train_dataloader(self) -> InMemoryLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> InMemoryLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader("test", shuffle=False)

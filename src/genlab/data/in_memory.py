"""What genlab's data modules share: splits held in memory as datasets that hand out whole
batches (``__getitems__``), and the loaders over them."""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler


def batch_indices(indices: Sequence[int] | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """A batch's indices as an int64 tensor on ``device`` (default: the host), for
    ``index_select``. The DataLoader hands ``__getitems__`` a list of Python ints, which numpy
    converts faster than ``torch.as_tensor``. To a GPU they travel through pinned memory: a copy from
    ordinary host memory would wait for all the work queued on the GPU."""
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


class EpochShuffle(Sampler[int]):
    """A new random order each epoch that depends only on ``seed`` and the epoch number (which
    Lightning passes in through ``set_epoch``), not on the global random state: a run resumed
    from a checkpoint sees the same batches as one that was never interrupted."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def order(self) -> torch.Tensor:
        """This epoch's order of the indices, int64 on the host."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=gen)

    def __iter__(self) -> Iterator[int]:
        # a generator: the order is drawn at the first batch, after Lightning's set_epoch (a resumed
        # run creates its iterator before it knows the epoch)
        yield from self.order().tolist()


class EpochShard(DistributedSampler):
    """This process's share of each epoch's order under DDP: genlab's shuffle (``EpochShuffle``)
    or the indices in order, padded with its first indices to a multiple of the number of
    processes and dealt out to them in turn, one tensor per epoch. Step k's batches of all the
    processes together are then step k's batch of one process with the batch size times the
    number of processes. For evaluation these are the indices Lightning's ``DistributedSampler``
    gives each process; for training Lightning would wrap ``EpochShuffle`` and shuffle its order
    once more with the global seed, handing out one Python int at a time. A loader that carries
    it is left as it is by Lightning (its sampler is already a ``DistributedSampler``)."""

    def __init__(self, n: int, num_replicas: int, rank: int, shuffle: bool, seed: int = 0) -> None:
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed, drop_last=False)
        self.n = n
        self.base = EpochShuffle(n, seed) if shuffle else None

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.base is not None:
            self.base.set_epoch(epoch)

    def order(self) -> torch.Tensor:
        """This epoch's indices for this process, int64 on the host."""
        order = self.base.order() if self.base is not None else torch.arange(self.n)
        pad = self.total_size - self.n
        if pad > 0:
            order = torch.cat([order, order.repeat(math.ceil(pad / self.n))[:pad]])
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        yield from self.order().tolist()


class IndexBatches(BatchSampler):
    """``BatchSampler`` whose batches are slices of one index tensor per pass over the data,
    held where the dataset is (``device``), when the order is genlab's own (``EpochShuffle``,
    ``EpochShard`` under DDP, or in order): the DataLoader hands them to ``__getitems__`` as they
    are. A pass then costs one ``randperm`` and one copy to the device instead of, per batch, a
    list of Python ints, its conversion to a tensor and, on a GPU, a copy through pinned memory
    (``batch_indices``). The batches are the same as ``BatchSampler``'s over the same sampler.
    Any other sampler (one Lightning puts in its place) is batched as ``BatchSampler`` does."""

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool,
                 device: torch.device | str | None = None) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.sampler, (EpochShuffle, EpochShard)):
            order = self.sampler.order()
        elif type(self.sampler) is SequentialSampler:
            order = torch.arange(len(self.sampler))
        else:
            yield from super().__iter__()
            return
        if self.device is not None:
            order = batch_indices(order, torch.device(self.device))
        end = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        for start in range(0, end, self.batch_size):
            yield order[start : start + self.batch_size]


class InMemoryLoader(DataLoader):
    """A ``DataLoader`` over a dataset that hands out whole batches (``__getitems__``). Without
    worker processes or pinned memory its iterator is a loop over the batch sampler that calls
    ``__getitems__`` and the collate function once per batch, as the DataLoader's own iterator
    does, without that iterator's machinery around the call (a profiler range, the index fetch,
    the fetcher object): about 50 us a batch of a training run on a 2-core CPU. With workers or
    pinned memory it is the DataLoader's iterator, created at the first batch of a pass, after
    Lightning has set the epoch: created earlier, as Lightning does with the first iterator of a
    run, worker processes would fetch the batches of the sampler's epoch before that (epoch 0 after
    a restart) at once.

    It can be resumed mid-epoch (Lightning's ``state_dict``/``load_state_dict`` interface for
    loaders, which it saves in every checkpoint): the state is the sampler's epoch and the batches
    handed out in it. After a restart from a checkpoint written mid-epoch (a SIGTERM, a checkpoint
    every N steps), the first pass over that epoch skips the batches already trained and goes on
    with the rest of the epoch's order, which depends on the seed and the epoch alone. Lightning
    counts those batches as done and expects only the rest; without the state it got the epoch's
    first batches again, and the last ones never."""

    _skip_now = 0  # batches the next DataLoader iterator skips (``_index_sampler``)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out = 0  # batches of the current pass
        self._resume: dict[str, Any] | None = None

    def _own_iterator(self) -> bool:
        return self.num_workers == 0 and not self.pin_memory and self.batch_sampler is not None \
            and hasattr(self.dataset, "__getitems__")

    def _epoch(self) -> int | None:
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        return getattr(sampler, "epoch", None)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch(), "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # batches None: from a loader that did not count them (earlier, torch's iterator with workers or pinned
        # memory); ``ResumeState`` warns when the checkpoint was written mid-epoch
        self._resume = state if state.get("batches") is not None else None

    def _skip(self) -> int:
        """Batches to skip at the start of this pass: those handed out before the checkpoint this
        run restarted from, when the pass is over the same epoch (else the restart came at the end
        of that epoch, and this pass is a new one)."""
        resume, self._resume = self._resume, None
        if resume is None or resume["epoch"] != self._epoch():
            return 0
        return int(resume["batches"])

    def __iter__(self) -> Iterator[Any]:
        skip = self._skip()  # at the first batch: after Lightning's set_epoch
        self._handed_out = skip
        for batch in self._gathered(skip) if self._own_iterator() else self._fetched(skip):
            self._handed_out += 1
            yield batch

    def _gathered(self, skip: int) -> Iterator[Any]:
        getitems, collate = self.dataset.__getitems__, self.collate_fn
        batches = self.batch_sampler
        if type(batches) is BatchSampler:  # the DataLoader's own over ``sampler=``: sliced if genlab's
            batches = IndexBatches(batches.sampler, batches.batch_size, batches.drop_last,
                                   getattr(self.dataset, "device", None))
        for indices in itertools.islice(batches, skip, None):  # those trained before a restart: no gather
            yield collate(getitems(indices))

    def _fetched(self, skip: int) -> Iterator[Any]:
        """The DataLoader's iterator (workers, pinned memory), its index sampler without the first
        ``skip`` batches: the workers never fetch those."""
        self._skip_now = skip
        try:
            iterator = super().__iter__()  # starts its pass over ``_index_sampler``, with workers fetches ahead
        finally:
            self._skip_now = 0
        yield from iterator

    @property
    def _index_sampler(self) -> Any:
        # torch's iterator keeps the index sampler it was created with and starts each of its passes
        # (persistent workers) with iter() on it: the skip is read then
        return SkipFirst(super()._index_sampler, self)


class SkipFirst:
    """An index sampler (a batch sampler) without the first ``loader._skip_now`` items of a pass
    begun while that is set. Its length is the whole pass's, the loader's length, which Lightning
    reads once for every epoch."""

    def __init__(self, sampler: Any, loader: InMemoryLoader) -> None:
        self.sampler, self.loader = sampler, loader

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(self.sampler, self.loader._skip_now, None)

    def __len__(self) -> int:
        return len(self.sampler)


class InMemoryDataModule(LightningDataModule):
    """Loaders over ``self._splits`` (``train``/``val``/``test`` datasets): shuffled training
    batches of ``batch_size``, evaluation batches of ``eval_batch_size``."""

    _splits: dict[str, Dataset]
    seed: int
    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    pin_memory: bool = False

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._splits[split]
        device = getattr(dataset, "device", torch.device("cpu"))
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        sampler = EpochShuffle(len(dataset), self.seed) if shuffle else SequentialSampler(dataset)
        common = dict(
            # the loader's own generator: creating an iterator each epoch would otherwise draw from
            # the global random state and shift the model's noise after a resume
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and device.type == "cpu",
            persistent_workers=self.num_workers > 0,
        )
        # overfit_batches: Lightning puts a sampler in order in the loader's place (under DDP its
        # share of it), and builds the loader anew with it. It looks for the loader's sampler, not a
        # batch sampler's
        overfit = bool(getattr(self.trainer, "overfit_batches", 0))
        shard = None if overfit else self._shard()
        if shard is not None:
            # under DDP this process's share, which Lightning would otherwise cut with its
            # DistributedSampler, one Python int at a time
            sampler = EpochShard(len(dataset), **shard, shuffle=shuffle, seed=self.seed)
        if overfit or shard is not None:
            return InMemoryLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=False, **common)
        return InMemoryLoader(dataset, batch_sampler=IndexBatches(sampler, batch_size, drop_last=False, device=device),
                              **common)

    def _shard(self) -> dict[str, int] | None:
        """``num_replicas`` and ``rank`` when the trainer runs several processes and shares the data
        out among them (Lightning's ``use_distributed_sampler``, on by default); else None."""
        trainer = self.trainer
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        connector = getattr(trainer, "_accelerator_connector", None)
        if not kwargs or kwargs.get("num_replicas", 1) <= 1 or not getattr(connector, "use_distributed_sampler", True):
            return None
        return {"num_replicas": kwargs["num_replicas"], "rank": kwargs["rank"]}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

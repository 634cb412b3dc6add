"""What genlab's data modules share: splits held in memory as datasets that hand out whole
batches (``__getitems__``), and the loaders over them."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset


def keep_batch(batch: Any) -> Any:
    """Collate function for datasets with ``__getitems__``: the batch is already stacked."""
    return batch


class InMemoryDataModule(LightningDataModule):
    """Loaders over ``self._splits`` (``train``/``val``/``test`` datasets): shuffled training
    batches of ``batch_size``, evaluation batches of ``eval_batch_size``."""

    _splits: dict[str, Dataset]
    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    pin_memory: bool = False

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self._splits[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            drop_last=False,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

"""A logging interval that fits the epoch: training metrics in every run, however short."""

from __future__ import annotations

import math
from typing import Any

from pytorch_lightning import Callback

LOGS_PER_EPOCH = 4  # at least this many training-metric rows per epoch
LONGEST = 50  # Lightning's default interval: no rarer than this


class LogInterval(Callback):
    """Sets ``trainer.log_every_n_steps`` before fitting to ``min(50, batches per epoch // 4)``
    (at least 1), so a run of 29 batches an epoch logs ``train/*`` 4 times an epoch instead of
    never, and Lightning has no reason to warn. ``train.py`` adds it when the config leaves
    ``trainer.log_every_n_steps`` null; a value given there wins.

    Batches per epoch: the training loader's length (after ``limit_train_batches``), divided by
    ``accumulate_grad_batches`` for automatic optimization, where Lightning counts optimizer steps."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        try:
            batches = len(trainer.datamodule.train_dataloader())
        except TypeError:  # a loader without a length: Lightning's default stays
            return
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            batches = min(batches, limit)
        elif limit is not None:
            batches = int(batches * limit)
        if pl_module.automatic_optimization:
            batches = math.ceil(batches / trainer.accumulate_grad_batches)
        trainer.log_every_n_steps = max(1, min(LONGEST, batches // LOGS_PER_EPOCH))

"""Lightning's rich progress bar, redrawn at most a few times a second during training."""

from __future__ import annotations

import math
import time
from typing import Any

from pytorch_lightning import Callback
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress import ProgressBar as LightningProgressBar


class ProgressBar(RichProgressBar):
    """``RichProgressBar`` that redraws after a training batch only when ``min_interval``
    seconds have passed since it last did, and at an epoch's last batch.

    Lightning's bar updates its task, gathers the progress-bar metrics and refreshes the display
    after every batch: 0.07-0.2 ms per batch on 2 CPU cores (more in a terminal than into a
    file), 2-4% of the MLP VAE's step (``scripts/benchmark.py``, "Progress bar"; Lightning's
    simple profiler). Like tqdm's ``mininterval``, a time limit keeps fast loops from paying for
    redraws nobody can read, and slow ones (a GAN's 0.2 s steps) still move on every batch. The
    bar shows the absolute batch count, so skipped redraws lose nothing.
    """

    def __init__(self, min_interval: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_interval = min_interval
        self._drawn = -math.inf

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._drawn < self.min_interval and batch_idx + 1 < self.total_train_batches:
            return
        self._drawn = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def with_progress_bar(callbacks: list[Callback], trainer_kwargs: dict[str, Any]) -> list[Callback]:
    """``callbacks`` plus genlab's :class:`ProgressBar` when the trainer shows one and the
    callbacks bring none of their own (Lightning would add its per-batch bar)."""
    if not trainer_kwargs.get("enable_progress_bar", True) or any(isinstance(c, LightningProgressBar) for c in callbacks):
        return callbacks
    return [*callbacks, ProgressBar()]

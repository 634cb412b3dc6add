"""Lightning's rich progress bar, redrawn at most a few times a second during training, and a
model summary without the columns genlab never fills."""

from __future__ import annotations

import math
import time
from typing import Any

from pytorch_lightning import Callback
from pytorch_lightning.callbacks import ModelSummary, RichProgressBar
from pytorch_lightning.callbacks.progress import ProgressBar as LightningProgressBar
from pytorch_lightning.utilities.model_summary import get_human_readable_count
from rich.progress import ProgressColumn
from rich.text import Text


class SpeedColumn(ProgressColumn):
    """Batches per second while a bar runs; nothing once it has finished (a rate of a finished
    one-batch bar reads ``0.00it/s``)."""

    def render(self, task: Any) -> Text:
        return Text("" if task.finished or not task.speed else f"{task.speed:>.2f}it/s", style="progress.data.speed")


class ProgressBar(RichProgressBar):
    """``RichProgressBar`` that redraws after a training batch only when ``min_interval``
    seconds have passed since it last did, and at an epoch's last batch.

    Like tqdm's ``mininterval``: fast loops do not pay for redraws nobody can read (Lightning's
    bar redraws after every batch; its cost: docs/benchmarks.md), slow ones still move on every
    batch, and the bar shows the absolute batch count, so skipped redraws lose nothing.
    """

    def __init__(self, min_interval: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_interval = min_interval
        self._drawn = -math.inf

    def configure_columns(self, trainer: Any) -> list:
        return [*super().configure_columns(trainer)[:-1], SpeedColumn()]  # Lightning's last column: the speed

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        """The logged progress-bar values, without Lightning's ``v_num`` (the logger's version,
        which says nothing about training)."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._drawn < self.min_interval and batch_idx + 1 < self.total_train_batches:
            return
        self._drawn = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class Summary(ModelSummary):
    """The model's nets, their parameters and mode, and the parameter totals in one line.
    Lightning's summary adds a FLOPs column, all zeros unless the module sets an example input."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], **kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        table = Table(header_style="bold")
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(f"Parameters: {get_human_readable_count(trainable_parameters)} trainable"
                      f"{f', {get_human_readable_count(frozen)} frozen' if frozen else ''}, {model_size:.1f} MB")


def with_progress_bar(callbacks: list[Callback], trainer_kwargs: dict[str, Any]) -> list[Callback]:
    """``callbacks`` plus genlab's :class:`ProgressBar` when the trainer shows one and the
    callbacks bring none of their own (Lightning would add its per-batch bar), and genlab's model
    :class:`Summary` in the same way."""
    if trainer_kwargs.get("enable_model_summary", True) and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks = [*callbacks, Summary()]
    if not trainer_kwargs.get("enable_progress_bar", True) or any(isinstance(c, LightningProgressBar) for c in callbacks):
        return callbacks
    return [*callbacks, ProgressBar()]

"""Run information that comparisons need: the resolved data sources and sizes and the wall time
in the loggers, and the full config inside every checkpoint (so eval needs only the file)."""

from __future__ import annotations

import time
from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer


class RunInfo(Callback):
    """Logs ``data_info`` (sources, split sizes) as config and ``time/fit_seconds`` and
    ``time/epoch_seconds`` (fit wall time, validation included, per epoch run) as metrics;
    stores the resolved config (and a text model's tokenizer) in checkpoints under ``"genlab"``."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}
        self.timings: dict[str, float] = {}
        self._start = 0.0
        self._epochs = 0

    def _data_info(self, trainer: Trainer) -> dict[str, Any]:
        return dict(getattr(trainer.datamodule, "info", {}) or {})

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start, self._epochs = time.perf_counter(), 0
        info = self._data_info(trainer)
        if info:
            for logger in trainer.loggers:
                logger.log_hyperparams({"data_info": info})

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epochs += 1

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.timings = {"time/fit_seconds": time.perf_counter() - self._start}
        if self._epochs:
            self.timings["time/epoch_seconds"] = self.timings["time/fit_seconds"] / self._epochs
        for logger in trainer.loggers:
            logger.log_metrics(self.timings, step=trainer.global_step)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["genlab"] = {"config": self.config, "data_info": self._data_info(trainer)}
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:  # text: generation and evaluation need the vocabulary, not the corpus
            checkpoint["genlab"]["tokenizer"] = tokenizer.to_dict()

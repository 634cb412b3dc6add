"""Run information that comparisons need: the resolved data sources and sizes in the loggers,
and the full config inside every checkpoint (so eval and generation need only the file)."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


class RunInfo(Callback):
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def _data_info(self, trainer: Trainer) -> dict[str, Any]:
        return dict(getattr(trainer.datamodule, "info", {}) or {})

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        info = self._data_info(trainer)
        if not info:
            return
        for logger in trainer.loggers:
            logger.log_hyperparams({"data_info": info})

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["genlab"] = {"config": self.config, "data_info": self._data_info(trainer)}

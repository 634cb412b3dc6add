"""A callback that kills its own process at a given training batch, to test resuming.
Added from the command line: +callbacks.kill._target_=fault_injection.KillAt (tests/ on PYTHONPATH)."""

from __future__ import annotations

import os
import signal

from pytorch_lightning import Callback


class KillAt(Callback):
    def __init__(self, epoch: int, batch: int, signal_name: str = "SIGKILL") -> None:
        self.epoch, self.batch, self.signal = epoch, batch, getattr(signal, signal_name)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signal)

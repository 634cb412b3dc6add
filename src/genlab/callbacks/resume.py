"""What a resumed run needs beyond Lightning's own checkpoint: the random number generators'
state (so a killed-and-resumed run draws the same batches and noise as an uninterrupted one), and
a checkpoint saved when a scheduler sends SIGTERM before pre-empting the job."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states as tensors and plain data, so the
    checkpoint still loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(Callback):
    """Saves the RNG state in every checkpoint and restores it when training restarts from one
    (before the first training batch, after Lightning's sanity check has drawn its own numbers;
    the order of training batches does not use this state, see ``genlab.data.in_memory.epoch_order``).
    On SIGTERM, Lightning stops after the current batch (under DDP every process after the same
    batch, ``genlab.compat``); this callback then writes
    ``last.ckpt`` so ``ckpt_path=last`` resumes from there."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._unplaced = False  # restored from a mid-epoch checkpoint without the loaders' place

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        fit = checkpoint.get("loops", {}).get("fit_loop", {})
        batches = fit.get("epoch_loop.batch_progress", {})
        mid_epoch = batches.get("current", {}).get("completed", 0) > 0 and not batches.get("is_last_batch", True)
        states = fit.get("state_dict", {}).get("combined_loader") or [{}]
        self._unplaced = mid_epoch and any(not isinstance(s, dict) or s.get("batches") is None for s in states)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loaders = trainer.train_dataloader
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        # a loader that cannot keep its place has Lightning's own warning
        if self._unplaced and all(hasattr(dl, "load_state_dict") for dl in loaders):
            log.warning("The checkpoint was written mid-epoch and holds no place in the epoch for the training data "
                        "(it was written before genlab's loaders all kept it): the resumed epoch trains its first batches "
                        "again, not the ones left")
        self._unplaced = False

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        ckpt = trainer.checkpoint_callback
        folder = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir) / "checkpoints"
        path = folder / "last.ckpt"
        trainer.save_checkpoint(path)
        log.warning("SIGTERM: saved %s (step %d); resume with ckpt_path=last", path, trainer.global_step)

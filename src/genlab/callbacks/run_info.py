"""Run information that comparisons need: the resolved data sources and sizes, parameter counts,
seed, the run's command-line overrides, the project's git commit and wall time in the loggers and in ``run_info.json``; the best and
final metrics in the W&B summary; and the full config inside every checkpoint (so eval needs only
the file)."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from pathlib import Path
from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from genlab.utils import startup
from genlab.utils.config import PROJECT_ROOT

log = logging.getLogger(__name__)


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The project's git commit (with ``-dirty`` when files changed), or ``None`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def parameter_counts(module: LightningModule) -> dict[str, int]:
    """Parameters in total, trainable, and per top-level net (``encoder``, ``generator``, ...)."""
    counts = {"total": sum(p.numel() for p in module.parameters()),
              "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad)}
    for name, child in module.named_children():
        n = sum(p.numel() for p in child.parameters())
        if n:
            counts[name] = n
    return counts


def run_overrides(folder: Path) -> list[str] | None:
    """The run's overrides as Hydra recorded them (``.hydra/overrides.yaml``): what tells one run
    of a sweep from another, in W&B's config as in the run folder, so ``genlab-compare`` reads the
    same rows from either."""
    import yaml

    path = folder / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else None


class RunInfo(Callback):
    """Logs ``run_info`` (data sources and sizes, parameter counts, seed, git commit) as config and
    ``time/fit_seconds``, ``time/epoch_seconds`` (fit wall time, validation included, per epoch)
    as metrics; the start-up phases up to the first training batch (``startup``, seconds); at the end of fitting puts ``best/<monitor>`` and the final metrics in the W&B
    summary and writes all of it to ``<run dir>/run_info.json``; stores the resolved config (and a
    text model's tokenizer) in checkpoints under ``"genlab"``."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}
        self.timings: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self._start = 0.0
        self._epochs = 0
        self._first_batch_seen = False

    def _data_info(self, trainer: Trainer) -> dict[str, Any]:
        return dict(getattr(trainer.datamodule, "info", {}) or {})

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start, self._epochs = time.perf_counter(), 0
        self.info = {
            "data_info": self._data_info(trainer),
            "parameters": parameter_counts(pl_module),
            "seed": self.config.get("seed"),
            "git_commit": git_commit(),
            "world_size": trainer.world_size,
            "overrides": run_overrides(Path(trainer.default_root_dir)),
        }
        for logger in trainer.loggers:
            logger.log_hyperparams({k: v for k, v in self.info.items() if v not in ({}, None)})

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            startup.mark("data setup")  # Lightning sets the data module up just before this hook

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._first_batch_seen:
            return
        self._first_batch_seen = True
        seconds = startup.finish("fit start, sanity check")
        if seconds is None:  # not the first run of this process
            return
        self.info["startup"] = {k: round(v, 3) for k, v in seconds.items()}
        self.timings["time/startup_seconds"] = seconds["total"]
        if trainer.is_global_zero:
            log.info("Start-up: %s", startup.describe(seconds))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epochs += 1

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.timings = {**self.timings, "time/fit_seconds": time.perf_counter() - self._start}
        if self._epochs:
            self.timings["time/epoch_seconds"] = self.timings["time/fit_seconds"] / self._epochs
        for logger in trainer.loggers:
            logger.log_metrics(self.timings, step=trainer.global_step)
        self.write(trainer, "fit")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write(trainer, "test")

    @rank_zero_only
    def write(self, trainer: Trainer, stage: str) -> None:
        """Final metrics, the best monitored value and timings: W&B summary and ``run_info.json``."""
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        final = {k: v for k, v in final.items() if math.isfinite(v)}
        best = {}
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "monitor", None) and ckpt.best_model_score is not None:
            best = {f"best/{ckpt.monitor}": float(ckpt.best_model_score), "best/checkpoint": ckpt.best_model_path}
        self.info.update({"final_metrics": {**self.info.get("final_metrics", {}), **final}, **best,
                          "timings": self.timings, "epochs": self._epochs})
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update({**final, **best, **self.timings})
        path = Path(trainer.default_root_dir) / "run_info.json"
        path.write_text(json.dumps(self.info, indent=2, default=str))

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["genlab"] = {"config": self.config, "data_info": self._data_info(trainer)}
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:  # text: generation and evaluation need the vocabulary, not the corpus
            checkpoint["genlab"]["tokenizer"] = tokenizer.to_dict()

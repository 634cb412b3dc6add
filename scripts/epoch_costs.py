"""Where a run's time goes besides its training batches: validation, the callbacks' per-epoch work
(sample grids, sample-quality metrics, checkpoints) and the loggers' writes.

    python scripts/epoch_costs.py                                   # the default experiment
    python scripts/epoch_costs.py model=gan trainer.max_epochs=10   # any train.py overrides

Runs ``train.py`` with those overrides (W&B offline unless ``WANDB_MODE`` says otherwise) and
times, by wrapping them: the fit, the training-epoch loop (which runs validation at the end of
each epoch), the validation loop, the epoch-end hooks of genlab's callbacks and of the checkpoint
callbacks, the sample-grid PNG writes, and the loggers' metric and image writes. Prints total
seconds, calls and milliseconds per call; nested rows are included in the rows around them (the
fit holds the epochs, an epoch its validation, validation the callbacks' validation hooks).
"""

from __future__ import annotations

import collections
import functools
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOTAL: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()


def timed(owner: object, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TOTAL[label] += time.perf_counter() - start
            CALLS[label] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    from pytorch_lightning import Callback, Trainer
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, WandbLogger
    from pytorch_lightning.loops.evaluation_loop import _EvaluationLoop
    from pytorch_lightning.loops.training_epoch_loop import _TrainingEpochLoop

    import genlab.callbacks as callbacks
    import genlab.callbacks.samples as samples

    timed(Trainer, "fit", "Trainer.fit")
    timed(_TrainingEpochLoop, "run", "training epoch (with its validation)")
    timed(_EvaluationLoop, "run", "validation / test loop")
    hooks = ("on_train_epoch_end", "on_validation_epoch_end", "on_validation_end", "on_fit_start")
    classes = [getattr(callbacks, n) for n in dir(callbacks)] + [ModelCheckpoint]
    for cls in {c for c in classes if isinstance(c, type) and issubclass(c, Callback)}:
        for hook in hooks:
            if hook in vars(cls):  # the hooks the class itself defines
                timed(cls, hook, f"{cls.__name__}.{hook}")
    timed(samples, "save_grid", "sample grid PNG writes")
    for logger in (WandbLogger, CSVLogger):
        for method in ("log_metrics", "log_image"):
            if hasattr(logger, method):
                timed(logger, method, f"{logger.__name__}.{method}")

    sys.argv = [str(ROOT / "train.py"), *sys.argv[1:]]
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    except SystemExit as exit_:  # train.py's quick exit
        if exit_.code not in (0, None):
            raise
    finally:
        print(f"\n{'seconds':>8} {'calls':>6} {'ms/call':>8}  what", file=sys.stderr)
        for label in sorted(TOTAL, key=lambda k: -TOTAL[k]):
            print(f"{TOTAL[label]:8.2f} {CALLS[label]:6d} {1e3 * TOTAL[label] / CALLS[label]:8.1f}  {label}",
                  file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

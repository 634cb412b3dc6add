"""Running a task function: user errors as one clear message, W&B always finished."""

from __future__ import annotations

import atexit
import importlib
import gc
import json
import logging
import math
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from genlab.utils import run_folder, wandb_setup
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)


def find_user_error(exc: BaseException | None) -> GenlabError | None:
    """The ``GenlabError`` behind ``exc``, also when Hydra's ``instantiate`` wrapped it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, GenlabError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class _NoProductTips(logging.Filter):
    """Drops Lightning's lines about nothing in the run: "💡 Tip: ... try installing
    litlogger/litmodels" (advertisements for its cloud services) and the note that genlab's own
    model summary replaces Lightning's."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("💡 Tip:") or message.startswith("Trainer already configured with model summary"))


LIGHTNING_INFO_LOGGER = "pytorch_lightning.utilities.rank_zero"


def quiet_known_warnings() -> None:
    """Hide warnings and notes that say nothing about the user's run: the CSV logger shares the
    run folder with Hydra's files on purpose, Lightning itself uses a deprecated pytree API, and
    Lightning's product tips."""
    warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    lightning_info = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _NoProductTips) for f in lightning_info.filters):
        lightning_info.addFilter(_NoProductTips())


_QUICK_EXIT = False


def quick_exit() -> None:
    """Spare the process's exit the garbage collector's walks over everything it imported.

    At exit the interpreter runs full collections over every tracked object, which with torch
    and Lightning loaded takes seconds after the run's work is done. ``gc.freeze()`` as the last
    exit handler moves those objects out of the collector's sight; the other exit handlers
    (W&B's, logging's flush, weakref finalizers) run as before, and memory goes back to the system
    with the process.
    Registered once per process, when the first task starts; it acts only at exit, so a
    multirun's jobs, which run one after the other in one process, are not affected."""
    global _QUICK_EXIT
    if not _QUICK_EXIT:
        atexit.register(gc.freeze)
        _QUICK_EXIT = True


def run_task(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Run ``task(cfg)``; return the metric named by ``cfg.optimized_metric`` (for sweepers).

    A mistake in the user's input (``GenlabError``) ends the process with its message and exit
    code 2, no traceback. Whatever happens, the W&B run is finished. In a multirun, a failing job
    writes ``failure.json`` (error, overrides, log file) into its folder; with
    ``continue_on_error=true`` the sweep goes on and the job returns NaN to the sweeper.
    """
    quiet_known_warnings()
    if run_folder.is_secondary_rank():  # DDP processes after the first: rank 0 says it all once
        importlib.import_module("pytorch_lightning")  # sets its loggers' levels as it is imported; ours come after
        for name in ("genlab", "lightning_fabric", "pytorch_lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("genlab.data").setLevel(logging.ERROR)  # the data-source note, once
    quick_exit()
    try:
        metrics = task(cfg)
    except BaseException as e:
        wandb_setup.finish(exit_code=1)
        job = multirun_job(cfg)
        if job is not None and isinstance(e, Exception):
            _record_failure(job, e)
            if cfg.get("continue_on_error", False):
                return math.nan
        user_error = find_user_error(e)
        if user_error is not None:
            print(f"genlab: error: {user_error}", file=sys.stderr)
            if job is None:
                _discard_unstarted_run()
            raise SystemExit(2) from None
        raise
    wandb_setup.finish(exit_code=0)
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:  # e.g. a run stopped by max_steps before its first validation
        if multirun_job(cfg) is None:  # a single run: no sweeper waits for the value
            return math.nan
        log.warning("optimized_metric=%r was not logged (logged: %s); returning NaN to the sweeper.",
                    name, ", ".join(sorted(metrics)))
        return math.nan
    return metrics[name]


def multirun_job(cfg: DictConfig) -> dict[str, Any] | None:
    """This job's number, overrides, folder and log file when Hydra runs a multirun, else ``None``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    folder = Path(hc.runtime.output_dir)
    return {"num": hc.job.num, "overrides": list(hc.overrides.task), "folder": str(folder),
            "log": str(folder / f"{cfg.get('task_name', hc.job.name)}.log")}


def _discard_unstarted_run() -> None:
    """Remove the run folder of a run that a user error stopped before it trained (no
    checkpoints), so it does not sit among the real runs; only when this process made the folder
    (``run_folder.created_here``), never one that was there before the run."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    if not run_folder.created_here(folder):
        return
    if folder.is_dir() and not (folder / "checkpoints").exists() and not (folder / "metrics.json").exists():
        logging.shutdown()  # close the run's log file before its folder goes
        shutil.rmtree(folder, ignore_errors=True)
    run_folder.release(folder)


def _record_failure(job: dict[str, Any], error: BaseException) -> None:
    user_error = find_user_error(error)
    message = str(user_error) if user_error is not None else f"{type(error).__name__}: {error}"
    record = {**{k: str(v) if isinstance(v, Path) else v for k, v in job.items()}, "error": message,
              "traceback": "" if user_error is not None else traceback.format_exc()}
    Path(job["folder"]).mkdir(parents=True, exist_ok=True)
    (Path(job["folder"]) / "failure.json").write_text(json.dumps(record, indent=2, default=str))
    log.error("job %s (%s) failed: %s; log: %s", job["num"], " ".join(job["overrides"]), message, job["log"])


def format_metrics(metrics: dict[str, Any]) -> str:
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items()))

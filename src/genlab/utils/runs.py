"""Earlier runs of a task: their folders, what they trained and their checkpoints, read from the
files Hydra and genlab leave in a run folder (no heavy imports)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from genlab.utils.errors import GenlabError

LAST = "checkpoints/last.ckpt"


def run_folders(task_dir: Path) -> list[Path]:
    """The run folders under ``task_dir`` (single runs, and multirun jobs at any depth: a resumed
    Optuna search puts its jobs in ``resumed_<n>/``) that hold a ``last.ckpt``, newest checkpoint
    first."""
    found = [*task_dir.glob(f"runs/*/{LAST}"), *task_dir.glob(f"multiruns/**/{LAST}")]
    return [p.parents[1] for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def choices_of(folder: Path) -> dict[str, str]:
    """The run's config choices (``{"model": "vae", "data": "mnist", ...}``), from ``.hydra/hydra.yaml``."""
    try:
        choices = OmegaConf.load(folder / ".hydra" / "hydra.yaml").hydra.runtime.choices
    except (OSError, AttributeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in choices.items()}


def describe(folder: Path) -> str:
    choices = choices_of(folder)
    return f"{folder} (model={choices.get('model', '?')}, data={choices.get('data', '?')})"


def newest_last_checkpoint(task_dir: Path, model: str | None, data: str | None, skip: Path | None = None) -> Path:
    """``ckpt_path=last``: the newest ``last.ckpt`` of the task whose run trained the same model on
    the same data (their config names); raises ``GenlabError`` naming the newest runs otherwise."""
    folders = [f for f in run_folders(task_dir) if skip is None or f.resolve() != skip.resolve()]
    for folder in folders:
        choices = choices_of(folder)
        if choices.get("model") == model and choices.get("data") == data:
            return folder / LAST
    if not folders:
        raise GenlabError(f"ckpt_path=last: no last.ckpt under {task_dir}; nothing to resume.")
    newest = "; ".join(describe(f) for f in folders[:3])
    raise GenlabError(f"ckpt_path=last: no run of model={model} data={data} under {task_dir} has a last.ckpt. "
                      f"Newest runs: {newest}. Give their model and data, resume=<run folder>, or ckpt_path=<file>.")


def run_to_resume(value: str, task_dir: Path) -> Path:
    """``resume=``: a run folder (with its ``.hydra/config.yaml`` and ``last.ckpt``), or ``last``
    for the task's newest run that has a ``last.ckpt``."""
    if value == "last":
        folders = run_folders(task_dir)
        if not folders:
            raise GenlabError(f"resume=last: no run under {task_dir} has a last.ckpt; nothing to resume.")
        return folders[0]
    folder = Path(value).expanduser().absolute()
    if folder.is_file() and folder.suffix == ".ckpt":
        raise GenlabError(f"resume={value!r} is a checkpoint file: give its run folder, or ckpt_path={value}.")
    for needed in (".hydra/config.yaml", LAST):
        if not (folder / needed).is_file():
            raise GenlabError(f"resume={value!r}: {folder / needed} is missing; resume takes a run folder of "
                              "train.py that holds checkpoints/last.ckpt (or resume=last).")
    return folder


def checkpoint_of(value: str, task_dir: Path) -> str:
    """``eval.py``/``generate.py`` ``ckpt_path=``: a file as it is; a run folder's best checkpoint
    (its ``epoch_*.ckpt``) or else its ``last.ckpt``; ``last`` for the task's newest run."""
    folder = run_to_resume(value, task_dir) if value == "last" else Path(value)
    if not folder.is_dir():
        return value
    best = sorted(folder.glob("checkpoints/epoch_*.ckpt"), key=lambda p: p.stat().st_mtime)
    return str(best[-1] if best else folder / LAST)


def wandb_run_id(folder: Path) -> str | None:
    """The id of the newest W&B run logged into ``folder`` (W&B names its run folders
    ``run-<time>-<id>`` and ``offline-run-<time>-<id>``)."""
    runs = sorted((folder / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    runs = [p for p in runs if p.is_dir() and not p.is_symlink()]
    return runs[-1].name.rsplit("-", 1)[1] if runs else None

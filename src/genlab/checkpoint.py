"""Reading genlab checkpoints: safely (no code runs on load, nothing but genlab's own classes is
built from what they hold) and with one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genlab.utils.errors import GenlabError


def check_ckpt_file(path: str | Path) -> Path:
    """``path`` as a ``Path`` if it names a file; checked before torch is imported, so a mistyped
    path is reported at once."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"ckpt_path={str(path)!r}: no such file. Give the path of a .ckpt under a run's checkpoints/ folder.")
    return path


def archive_problem(path: Path) -> str | None:
    """What is wrong with the zip archive ``torch.save`` writes, or ``None``: an empty, truncated
    or overwritten file, and any bit changed since it was written (each member's CRC-32 is checked,
    which ``torch.load`` does not do)."""
    import zipfile

    if path.stat().st_size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        return "not the zip archive torch.save writes: truncated, overwritten or another kind of file"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"a damaged zip archive: {e}"
    return f"{bad} fails its CRC-32 check: the file changed after it was written" if bad else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``train.py``: an intact archive (``archive_problem``) holding
    tensors and plain data only (``weights_only``, so no code in it runs), whose stored config
    builds nothing but genlab's own classes (``check_stored_config``)."""
    import pickle

    path = check_ckpt_file(path)
    problem = archive_problem(path)
    if problem is not None:
        raise GenlabError(f"ckpt_path={str(path)!r} is not a readable checkpoint ({problem}).")
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # objects beyond tensors and plain data: refused unread
        raise GenlabError(f"ckpt_path={str(path)!r} is not a readable checkpoint (it holds Python objects other than "
                          "tensors and plain data, which genlab never loads).") from e
    except Exception as e:  # not a checkpoint at all ...
        first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise GenlabError(f"ckpt_path={str(path)!r} is not a readable checkpoint ({type(e).__name__}: {first_line}).") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("genlab"), dict):
        raise GenlabError(f"ckpt_path={str(path)!r} was not written by genlab's train.py (no config inside).")
    check_stored_config(ckpt["genlab"].get("config"), path)
    return ckpt


def run_dir_of(path: str | Path) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` -> ``<run>``)."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def tokenizer_from_checkpoint(ckpt: dict[str, Any]) -> Any:
    """The tokenizer a text model was trained with, or ``None`` for image models."""
    from genlab.data.tokenizers import Tokenizer

    state = ckpt["genlab"].get("tokenizer")
    return Tokenizer.from_dict(state) if state else None


# what a checkpoint's config may build: (prefix of the target, base class it must be a subclass of)
ALLOWED_TARGETS = (
    ("genlab.models.", "pytorch_lightning.LightningModule"),
    ("genlab.nets.", "torch.nn.Module"),
    ("genlab.data.", "pytorch_lightning.LightningDataModule"),
    ("torch.optim.", "torch.optim.Optimizer"),
    ("torch.optim.lr_scheduler.", "torch.optim.lr_scheduler.LRScheduler"),
    ("torch.optim.lr_scheduler.", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
)
BUILT_FROM_CHECKPOINTS = ("model", "data")  # the parts of the stored config genlab instantiates


def _targets(node: Any, where: str) -> list[tuple[str, Any]]:
    """Every ``_target_`` in a plain config tree, with where it is; refuses interpolations, which
    genlab never stores (its configs are saved resolved) and which could build a target later."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += [(f"{where}.{key}", value)] if key == "_target_" else _targets(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _targets(value, f"{where}[{i}]")
    elif isinstance(node, str) and "${" in node:
        found.append((where, node))  # reported as not allowed below
    return found


def allowed_target(target: Any) -> bool:
    """Whether ``target`` names a genlab model, net or data module, or a torch optimizer or
    learning-rate scheduler: checked on the name before anything is imported, then on the class."""
    from hydra.utils import get_class, get_object

    if not isinstance(target, str) or "${" in target:
        return False
    for prefix, base in ALLOWED_TARGETS:
        if target.startswith(prefix):
            try:
                cls = get_object(target)
            except Exception:
                return False
            if isinstance(cls, type) and issubclass(cls, get_class(base)):
                return True
    return False


def check_stored_config(config: Any, path: str | Path) -> None:
    """Refuse a checkpoint whose stored model or data config would build anything but genlab's
    own classes and torch's optimizers and schedulers; run before anything is instantiated."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise GenlabError(f"ckpt_path={str(path)!r} holds no model config; it was not written by genlab's train.py.")
    for part in BUILT_FROM_CHECKPOINTS:
        for where, target in _targets(config.get(part), part):
            if not allowed_target(target):
                raise GenlabError(
                    f"ckpt_path={str(path)!r} is refused: its config asks to build {target!r} ({where}), which is not "
                    "a genlab model, net or data module, nor a torch optimizer or scheduler."
                )


def model_from_checkpoint(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild a trained model from a checkpoint alone: ``(model in eval mode, run config,
    checkpoint)``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    ckpt = load_checkpoint(path)
    run_cfg = OmegaConf.create(ckpt["genlab"]["config"])
    model = instantiate(run_cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), run_cfg, ckpt


def check_resume(path: str | Path, model: Any) -> int:
    """``train.py ckpt_path=``: the checkpoint passes ``load_checkpoint``'s checks and its weights
    are this run's model's (same names and shapes), so Lightning's own loading of it cannot fail
    halfway or build anything. (Lightning reads the file again: ``fit`` takes a path.) Returns the
    global step it was written at."""
    ckpt = load_checkpoint(path)
    mine, theirs = model.state_dict(), ckpt["state_dict"]
    missing, unexpected = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
    reshaped = [k for k in sorted(mine.keys() & theirs.keys())
                if getattr(theirs[k], "shape", None) != mine[k].shape]
    if missing or unexpected or reshaped:
        stored = str(ckpt["genlab"]["config"]["model"].get("_target_", "?")).rsplit(".", 1)[-1]
        first = (f"{reshaped[0]} is {tuple(theirs[reshaped[0]].shape)} there, {tuple(mine[reshaped[0]].shape)} here"
                 if reshaped else f"{(missing or unexpected)[0]} is {'missing there' if missing else 'not in this model'}")
        raise GenlabError(
            f"ckpt_path={str(path)!r} holds a {stored} that does not fit this run's {type(model).__name__} ({first}). "
            "Resume with the model settings of the run that wrote it."
        )
    return int(ckpt.get("global_step", 0))

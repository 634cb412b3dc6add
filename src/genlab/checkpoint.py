"""Reading genlab checkpoints: safely (no code runs on load) and with one clear error."""

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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``train.py``; tensors and plain data only (``weights_only``)."""
    path = check_ckpt_file(path)
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a checkpoint, unsafe pickle ...
        raise GenlabError(f"ckpt_path={str(path)!r} is not a readable checkpoint ({type(e).__name__}: {e}).") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "genlab" not in ckpt:
        raise GenlabError(f"ckpt_path={str(path)!r} was not written by genlab's train.py (no config inside).")
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


def model_from_checkpoint(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild a trained model from a checkpoint alone: ``(model in eval mode, run config, checkpoint)``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    ckpt = load_checkpoint(path)
    run_cfg = OmegaConf.create(ckpt["genlab"]["config"])
    model = instantiate(run_cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), run_cfg, ckpt

"""Config helpers: where the configs live, the project root resolver, building objects."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = PROJECT_ROOT / "conf"

# ${genlab_root:} -> the folder holding conf/, so data/ and outputs/ do not depend on the cwd
if not OmegaConf.has_resolver("genlab_root"):
    OmegaConf.register_new_resolver("genlab_root", lambda: str(PROJECT_ROOT))


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain nested dicts (for loggers and checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a group such as ``callbacks``."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]

"""Config helpers: where the configs live, the project root resolver, building objects."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = PROJECT_ROOT / "conf"

# ${genlab_root:} -> the folder holding conf/, so data/ and outputs/ do not depend on the cwd
if not OmegaConf.has_resolver("genlab_root"):
    OmegaConf.register_new_resolver("genlab_root", lambda: str(PROJECT_ROOT))


def compose_config(name: str = "train", overrides: Iterable[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with command-line style overrides, as ``train.py`` would,
    for use from Python (tests, notebooks, scripts). ``output_dir`` replaces the run folder
    Hydra would create."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)  # so ${hydra:...} and the config choices resolve
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir)
        del cfg.hydra
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain nested dicts (for loggers and checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a group such as ``callbacks``."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]

"""Shared fixtures: composed configs, a fake offline network, the reference data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from genlab.utils.config import CONF_DIR, PROJECT_ROOT
from genlab.utils.errors import GenlabError

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (wandb_records)

# ../shared/data beside the checkout: real reference data for tests; never required by genlab
SHARED_DATA = Path(os.environ.get("GENLAB_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "FashionMNIST" / "raw").is_dir(), reason=f"reference data not found at {SHARED_DATA}"
)


@pytest.fixture(autouse=True)
def _wandb_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to W&B servers: disabled unless a test asks for offline."""
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torchvision's download fail at once, as on a machine without internet."""

    def fail(root, dataset, timeout=20.0):
        raise GenlabError(f"downloading {dataset} failed (no network in tests)")

    monkeypatch.setattr("genlab.data.image_sources.download", fail)


def compose_config(name: str, overrides: Iterable[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as Hydra would, writing into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
        del cfg.hydra
    return cfg


@pytest.fixture
def train_config(tmp_path: Path):
    def make(*overrides: str) -> DictConfig:
        return compose_config("train", overrides, tmp_path)

    return make

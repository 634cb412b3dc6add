"""Shared fixtures: composed configs, a fake offline network, the reference data folder."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# pytest-xdist runs the suite in several processes (pyproject's addopts): each takes its share of
# the cores for torch, and passes it on to the training runs it starts, instead of each process
# running as many threads as there are cores (on 2 cores, that made the suite slower than one process)
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import pytest
from omegaconf import DictConfig

from genlab.utils.config import PROJECT_ROOT, compose_config
from genlab.utils.errors import GenlabError

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (wandb_records)

# ../shared/data beside the checkout: real reference data for tests; never required by genlab
SHARED_DATA = Path(os.environ.get("GENLAB_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "FashionMNIST" / "raw").is_dir(), reason=f"reference data not found at {SHARED_DATA}"
)


def load_script(name: str):
    """A module of ``scripts/`` (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_identity_blocks(deep, plain) -> list:
    """Zero the last convolution of each ``ResidualBlock`` in ``deep`` (each block is then the
    identity) and load ``plain``'s weights into ``deep``'s other weighted layers (BatchNorm's
    weights and statistics among them), in order: ``deep`` then computes what ``plain`` computes.
    Returns the blocks."""
    import torch
    from genlab.nets.image import ResidualBlock

    blocks = [m for m in deep.modules() if isinstance(m, ResidualBlock)]
    with torch.no_grad():
        for block in blocks:
            block.body[3].weight.zero_()
            block.body[3].bias.zero_()
    weighted = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear,
                torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    in_blocks = {id(m) for b in blocks for m in b.modules()}
    mine = [m for m in deep.modules() if isinstance(m, weighted) and id(m) not in in_blocks]
    theirs = [m for m in plain.modules() if isinstance(m, weighted)]
    for a, b in zip(mine, theirs, strict=True):
        a.load_state_dict(b.state_dict())
    return blocks


@pytest.fixture(autouse=True, scope="session")
def _genlab_cache(tmp_path_factory: pytest.TempPathFactory):
    """genlab's data cache in a folder of this test session (entries made by tests are read by
    later tests), not in the user's ``~/.cache/genlab``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("genlab_cache")))
        yield


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


@pytest.fixture
def train_config(tmp_path: Path):
    def make(*overrides: str) -> DictConfig:
        return compose_config("train", overrides, tmp_path)

    return make

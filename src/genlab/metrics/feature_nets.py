"""Small CNN classifiers whose penultimate features stand in for Inception's in FID/KID/PR.

Inception weights need a download; these ship inside the package (under 1 MB each), are
trained by ``scripts/train_feature_nets.py`` and are checked against a recorded sha256 at load.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import torch
from torch import nn

from genlab.utils.errors import GenlabError

WEIGHTS_DIR = Path(str(files("genlab.metrics") / "weights"))
REGISTRY = WEIGHTS_DIR / "registry.json"  # dataset -> {"file", "sha256", "accuracy", "trained_on"}
MNIST_TEST_FOR_TRAINING = 8000  # MNIST test images the MNIST net trains on (no full train split offline)


def mnist_test_split(n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the MNIST test images the shipped MNIST net trained on, and of those it never
    saw (its accuracy and the FID calibration use only these)."""
    order = torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))
    return order[:MNIST_TEST_FOR_TRAINING], order[MNIST_TEST_FOR_TRAINING:]


class FeatureCNN(nn.Module):
    """Strided convs 28 -> 14 -> 7 (32, 64 maps), conv 128 at 7x7, global average pool
    (128 features) -> 10 logits. About 0.1 M parameters: trainable on a laptop CPU in minutes."""

    num_features = 128

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(1, 32, 2),      # 14x14
            *block(32, 64, 2),     # 7x7
            *block(64, 128, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: images in [0, 1], ``[N, 1, 28, 28]`` -> ``[N, 128]``."""
        return self.body(x.float() * 2.0 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """The frozen feature net as torchmetrics wants a custom extractor: images -> features."""

    def __init__(self, net: FeatureCNN) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.num_features = net.num_features

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # always in eval mode (BatchNorm statistics are fixed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def registry() -> dict:
    return json.loads(REGISTRY.read_text()) if REGISTRY.is_file() else {}


@lru_cache(maxsize=None)
def load_feature_net(dataset: str, path: str | None = None) -> FeatureCNN:
    """The shipped feature net for ``dataset`` (``mnist`` or ``fashion_mnist``), sha256-checked."""
    entry = registry().get(dataset)
    if entry is None:
        raise GenlabError(f"no feature net ships for dataset {dataset!r}; available: {sorted(registry())}.")
    file = Path(path) if path else WEIGHTS_DIR / entry["file"]
    if not file.is_file():
        raise GenlabError(f"feature net weights missing: {file}. Reinstall genlab or rerun scripts/train_feature_nets.py.")
    digest = sha256(file)
    if digest != entry["sha256"]:
        raise GenlabError(
            f"feature net weights {file} fail their checksum (sha256 {digest[:16]}..., expected "
            f"{entry['sha256'][:16]}...): the file was changed or damaged. Reinstall genlab or rerun "
            "scripts/train_feature_nets.py, which records the new checksum."
        )
    # built without drawing from the global random state: the first run in a process (the first
    # job of a sweep) would otherwise train with other noise than the same config run later
    with torch.random.fork_rng(devices=[]):
        net = FeatureCNN()
    net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return net.eval()

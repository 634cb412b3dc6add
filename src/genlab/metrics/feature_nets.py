"""Small CNN classifiers whose features stand in for Inception's in FID, KID and precision/recall.

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
import torch.nn.functional as F
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
    (128 values) -> 10 logits. About 0.1 M parameters: trainable on a laptop CPU in minutes.

    ``features`` is what FID, KID and precision/recall compare. The globally pooled 128 values
    alone, a classifier's usual embedding, are blind to dropped modes: images of one class sit
    close to the data's mean there (Fashion-MNIST: T-shirts only scored FID 6.5, below noise of
    std 0.1). So the features also hold each of the three conv stages average-pooled to 2x2 (where
    strokes and textures are, which is what noise, blur and checkerboards change) and the class
    probabilities times ``PROB_SCALE`` (what a missing class changes).
    """

    num_classes = 10
    stages = (32, 64, 128)
    PROB_SCALE = 10.0
    num_features = sum(c * 4 for c in stages) + stages[-1] + num_classes  # 1034

    def __init__(self) -> None:
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
        self.head = nn.Linear(self.stages[-1], self.num_classes)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps after each conv stage, ``[N, C, H, W]``, of images in [0, 1]."""
        h, maps = x.float() * 2.0 - 1.0, []
        for i in range(len(self.stages)):
            h = self.body[3 * i : 3 * i + 3](h)
            maps.append(h)
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: images in [0, 1], ``[N, 1, 28, 28]`` -> ``[N, num_features]``: the stages pooled
        to 2x2, the globally pooled last stage, ``PROB_SCALE`` x class probabilities (last)."""
        maps = self.stage_maps(x)
        pooled = maps[-1].mean(dim=(2, 3))
        probs = self.head(pooled).softmax(dim=1)
        local = [F.adaptive_avg_pool2d(m, 2).flatten(1) for m in maps]
        return torch.cat([*local, pooled, self.PROB_SCALE * probs], dim=1)

    @classmethod
    def class_probs(cls, features: torch.Tensor) -> torch.Tensor:
        """The class probabilities held in the last columns of ``features``."""
        return features[:, -cls.num_classes :] / cls.PROB_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.float() * 2.0 - 1.0))


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

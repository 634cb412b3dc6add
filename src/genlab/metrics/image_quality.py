"""FID, KID, precision/recall and density/coverage of generated images, from one feature pass.

Features come from genlab's shipped feature nets (``feature_nets.py``), so everything works
offline; FID and KID are torchmetrics' implementations, fed the precomputed features through an
identity extractor, so each image goes through the feature net once for all metrics.
Precision/recall follow Kynkäänniemi et al. 2019 and density/coverage Naeem et al. 2020, with
k-nearest-neighbour balls in the same feature space.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import torch
from torch import nn

from genlab.metrics.feature_nets import FeatureCNN, load_feature_net


class _Features(nn.Module):
    """Identity 'extractor' for torchmetrics: the inputs already are features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@torch.no_grad()
def extract(net: FeatureCNN, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 1000) -> torch.Tensor:
    """Features ``[N, 128]`` of images in [0, 1] (a tensor or an iterable of batches)."""
    device = next(net.parameters()).device
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    return torch.cat([net.features(b.to(device)).float().cpu() for b in batches])


def _kth_nn_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    radii = []
    for part in x.split(chunk):
        d = torch.cdist(part, x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself at distance 0
    return torch.cat(radii)


def _inside_count(query: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """For each query point, in how many of the balls (centres, radii) it lies."""
    counts = []
    for part in query.split(chunk):
        counts.append((torch.cdist(part, centres) <= radii.unsqueeze(0)).sum(dim=1))
    return torch.cat(counts)


def precision_recall_density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""
    real_r, fake_r = _kth_nn_radius(real, k), _kth_nn_radius(fake, k)
    fake_in_real = _inside_count(fake, real, real_r)
    real_in_fake = _inside_count(real, fake, fake_r)
    covered = torch.zeros(len(real), dtype=torch.bool)
    for start in range(0, len(real), 2048):  # real ball i holds at least one fake
        d = torch.cdist(real[start : start + 2048], fake)
        covered[start : start + 2048] = (d <= real_r[start : start + 2048].unsqueeze(1)).any(dim=1)
    return {
        "precision": (fake_in_real > 0).float().mean().item(),
        "recall": (real_in_fake > 0).float().mean().item(),
        "density": (fake_in_real.float().sum() / (k * len(fake))).item(),
        "coverage": covered.float().mean().item(),
    }


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 50, kid_subset_size: int = 1000) -> dict[str, float]:
    """FID and KID (mean ± std over subsets) between two feature sets, with torchmetrics."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    extractor = _Features(real.shape[1])
    fid = FrechetInceptionDistance(feature=extractor, normalize=False)
    size = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        # torchmetrics warns that KID keeps every feature it is given; here that is the two sets
        # above, already in memory, so the warning is about nothing the run can change
        warnings.filterwarnings("ignore", message=r".*will save all extracted features in buffer.*")
        kid = KernelInceptionDistance(feature=_Features(real.shape[1]), subsets=kid_subsets, subset_size=size,
                                      normalize=False)
    for metric in (fid, kid):
        metric.update(real.double(), real=True)
        metric.update(fake.double(), real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": fid.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()}


def sample_quality(real_images: torch.Tensor, fake_images: torch.Tensor, dataset: str, k: int = 3) -> dict[str, float]:
    """All sample-quality metrics between two image sets in [0, 1] ``[N, 1, 28, 28]``."""
    net = load_feature_net(dataset)
    real, fake = extract(net, real_images), extract(net, fake_images)
    return {**fid_kid(real, fake), **precision_recall_density_coverage(real, fake, k=k)}

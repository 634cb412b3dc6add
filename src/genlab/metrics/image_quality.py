"""FID, KID, precision/recall, density/coverage and the class histogram of generated images,
from one feature pass.

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

from genlab.metrics.feature_nets import FeatureCNN


class _Features(nn.Module):
    """Identity 'extractor' for torchmetrics: the inputs already are features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@torch.no_grad()
def extract(net: FeatureCNN, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 1000) -> torch.Tensor:
    """Features ``[N, FeatureCNN.num_features]`` of images in [0, 1] (a tensor or an iterable of batches)."""
    device = next(net.parameters()).device
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    return torch.cat([net.features(b.to(device)).float().cpu() for b in batches])


def kth_nn_radius(x: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
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


def precision_recall_density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 3,
                                      real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al.
    2020). ``real_radii``: ``kth_nn_radius(real, k)`` when already at hand (it depends only on
    the real set, and is the costliest part for a large one)."""
    real_r = kth_nn_radius(real, k) if real_radii is None else real_radii
    fake_r = kth_nn_radius(fake, k)
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


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Features(real.shape[1]), normalize=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return metric.compute().item()


def intra_class_fid(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean over classes of the FID between the real and the generated images of each class
    (Miyato & Koyama 2018): a conditional model must match every class, not only the mixture.
    Each class has a tenth of the samples, so the figure sits higher than the overall FID."""
    classes = labels.unique()
    return sum(fid(real[real_labels == c], fake[labels == c]) for c in classes) / len(classes)


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 50, kid_subset_size: int = 1000) -> dict[str, float]:
    """FID and KID (mean ± std over subsets) between two feature sets, with torchmetrics."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        # torchmetrics warns that KID keeps every feature it is given; here that is the two sets
        # above, already in memory, so the warning is about nothing the run can change
        warnings.filterwarnings("ignore", message=r".*will save all extracted features in buffer.*")
        kid = KernelInceptionDistance(feature=_Features(real.shape[1]), subsets=kid_subsets, subset_size=size,
                                      normalize=False)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": fid(real, fake), "kid": kid_mean.item(), "kid_std": kid_std.item()}


def class_histogram_distance(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """``class_tv``: total variation distance (0 to 1) between the histograms of the classes the
    feature net predicts for real and for generated images, a direct mode-collapse check: a
    generator drawing one class of ten scores about 0.9, one drawing half the classes 0.5.
    ``class_min``: the share of the rarest predicted class among the generated images (0.1 for ten
    balanced classes, 0 when a class is missing), the check that no single mode is dropped, which
    a small ``class_tv`` spread over many classes can hide."""
    def histogram(features: torch.Tensor) -> torch.Tensor:
        predicted = FeatureCNN.class_probs(features).argmax(dim=1)
        return torch.bincount(predicted, minlength=FeatureCNN.num_classes).float() / len(features)

    fake_histogram = histogram(fake)
    return {"class_tv": 0.5 * (histogram(real) - fake_histogram).abs().sum().item(),
            "class_min": fake_histogram.min().item()}


def class_accuracy(fake: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of generated images (their features) whose predicted class is the one requested."""
    return (FeatureCNN.class_probs(fake).argmax(dim=1) == labels.to(fake.device)).float().mean().item()


def feature_metrics(real: torch.Tensor, fake: torch.Tensor, k: int = 3, real_radii: torch.Tensor | None = None,
                    labels: torch.Tensor | None = None, kid_subsets: int = 50) -> dict[str, float]:
    """Every sample-quality metric between two sets of feature-net features; with the ``labels``
    the samples were drawn for (a conditional model), ``class_accuracy`` too."""
    metrics = {**fid_kid(real, fake, kid_subsets=kid_subsets),
               **precision_recall_density_coverage(real, fake, k=k, real_radii=real_radii),
               **class_histogram_distance(real, fake)}
    if labels is not None:
        metrics["class_accuracy"] = class_accuracy(fake, labels)
    return metrics

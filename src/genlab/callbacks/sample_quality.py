"""FID, KID, precision/recall, density/coverage and class histogram of samples during training."""

from __future__ import annotations

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from genlab.callbacks.samples import due
from genlab.metrics.feature_nets import load_feature_net
from genlab.metrics.image_quality import extract, feature_metrics, kth_nn_radius


class SampleQuality(Callback):
    """Logs ``val/fid``, ``val/kid``, ``val/precision``, ``val/recall``, ``val/density``,
    ``val/coverage``, ``val/class_tv`` (distance of the samples' class histogram to the data's),
    ``val/class_min`` (the share of the samples' rarest class) and, for a class-conditional model,
    ``val/class_accuracy`` (the share of samples the feature net assigns to the class they were
    drawn for) every ``every_n_epochs`` validation epochs: ``num_samples`` images from a fixed
    noise batch against the validation images, in the feature space of the net genlab ships for
    the dataset (so it works offline). Every process computes the same numbers, so
    checkpointing by ``val/fid`` agrees across DDP ranks.
    """

    def __init__(self, num_samples: int = 2000, every_n_epochs: int = 1, seed: int = 0, k: int = 3,
                 batch_size: int = 500) -> None:
        self.num_samples, self.every_n_epochs, self.seed, self.k = num_samples, every_n_epochs, seed, k
        self.batch_size = batch_size
        self._net = None
        self._real: torch.Tensor | None = None
        self._real_radii: torch.Tensor | None = None
        self._latents: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._net = load_feature_net(trainer.datamodule.dataset).to(pl_module.device)
        self._real = extract(self._net, trainer.datamodule.images("val"))
        self._real_radii = kth_nn_radius(self._real, self.k)  # fixed for the fit: computed once
        self._latents = pl_module.sample_latents(self.num_samples, generator=torch.Generator().manual_seed(self.seed))
        self._labels = pl_module.sample_labels(self.num_samples)  # every class in turn (conditional models)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._real is None or not due(trainer, self.every_n_epochs):
            return
        fake = extract(self._net, pl_module.generate_batches(self._latents, self._labels, self.batch_size))
        metrics = feature_metrics(self._real, fake, k=self.k, real_radii=self._real_radii, labels=self._labels)
        for name, value in metrics.items():  # the same on every process; reduced, they stay so
            pl_module.log(f"val/{name}", value, prog_bar=name == "fid", sync_dist=True)

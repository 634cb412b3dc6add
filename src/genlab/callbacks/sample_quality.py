"""FID, KID, precision/recall, density/coverage of generated samples during training."""

from __future__ import annotations

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from genlab.callbacks.samples import due
from genlab.metrics.feature_nets import load_feature_net
from genlab.metrics.image_quality import extract, fid_kid, precision_recall_density_coverage


class SampleQuality(Callback):
    """Logs ``val/fid``, ``val/kid``, ``val/precision``, ``val/recall``, ``val/density``,
    ``val/coverage`` every ``every_n_epochs`` validation epochs: ``num_samples`` images from a
    fixed noise batch against the validation images, in the feature space of the net genlab
    ships for the dataset (so it works offline). Every process computes the same numbers, so
    checkpointing by ``val/fid`` agrees across DDP ranks.
    """

    def __init__(self, num_samples: int = 2000, every_n_epochs: int = 1, seed: int = 0, k: int = 3,
                 batch_size: int = 500) -> None:
        self.num_samples, self.every_n_epochs, self.seed, self.k = num_samples, every_n_epochs, seed, k
        self.batch_size = batch_size
        self._net = None
        self._real: torch.Tensor | None = None
        self._latents: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._net = load_feature_net(trainer.datamodule.dataset).to(pl_module.device)
        self._real = extract(self._net, trainer.datamodule.images("val"))
        self._latents = pl_module.sample_latents(self.num_samples, generator=torch.Generator().manual_seed(self.seed))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._real is None or not due(trainer, self.every_n_epochs):
            return
        fake = extract(self._net, (pl_module.generate(z) for z in self._latents.split(self.batch_size)))
        metrics = {**fid_kid(self._real, fake), **precision_recall_density_coverage(self._real, fake, k=self.k)}
        for name, value in metrics.items():  # the same on every process; reduced, they stay so
            pl_module.log(f"val/{name}", value, prog_bar=name == "fid", sync_dist=True)

"""Sample grids written each validation epoch, as PNG in the run directory and to W&B."""

from __future__ import annotations

from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from genlab.utils.images import save_grid


class ImageSamples(Callback):
    """Grids of samples from a *fixed* latent batch (so epochs compare), and reconstructions.

    Works with any module that has ``sample_latents(n, generator)`` and ``generate(z)``;
    reconstructions are drawn when it also has ``reconstruct(x)`` (a VAE). A class-conditional
    model draws one row of 8 per class instead of ``num_samples``, the class names beside them,
    and logs ``val/class_accuracy``: the share of ``class_samples`` draws (every class in turn,
    fixed noise) that the shipped feature net, a classifier, assigns to their class (0: not
    measured; the GANs' sample-quality callback reports it instead).
    Files: ``<run dir>/samples/{samples,reconstructions}_epoch{E:03d}.png``.
    """

    def __init__(self, num_samples: int = 64, every_n_epochs: int = 1, seed: int = 0, folder: str = "samples",
                 class_samples: int = 1000) -> None:
        self.num_samples, self.every_n_epochs, self.seed, self.folder = num_samples, every_n_epochs, seed, folder
        self.class_samples = class_samples
        self._classified: tuple[torch.Tensor, torch.Tensor] | None = None  # latents and labels for val/class_accuracy
        self._net = None
        self._latents: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._originals: torch.Tensor | None = None
        self._original_labels: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        classes = getattr(pl_module, "num_classes", 0)
        self._labels = torch.arange(classes).repeat_interleave(8) if classes else None
        self._latents = pl_module.sample_latents(self.num_samples if not classes else 8 * classes, generator=gen)
        if classes and self.class_samples:
            from genlab.metrics.feature_nets import load_feature_net

            self._net = load_feature_net(trainer.datamodule.dataset).to(pl_module.device)
            self._classified = (pl_module.sample_latents(self.class_samples, generator=gen),
                                pl_module.sample_labels(self.class_samples))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._originals is None and batch_idx == 0:
            # the first validation batch is the same every epoch (no shuffling); take images
            # spread over it, since datasets may be sorted by class
            x = batch[0]
            idx = torch.linspace(0, len(x) - 1, min(self.num_samples // 2, len(x))).long().to(x.device)
            self._originals = x[idx].detach().cpu()
            self._original_labels = batch[1][idx].detach().cpu()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._latents is None or not due(trainer, self.every_n_epochs):
            return
        if self._classified is not None:  # the same draws on every process: the same value
            from genlab.metrics.image_quality import class_accuracy, extract

            z, labels = self._classified
            accuracy = class_accuracy(extract(self._net, pl_module.generate_batches(z, labels)), labels)
            pl_module.log("val/class_accuracy", accuracy, sync_dist=True)
        self._write(trainer, pl_module)

    @rank_zero_only
    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        conditional = self._labels is not None
        grids = {"samples": pl_module.generate(self._latents, self._labels).cpu()}
        if hasattr(pl_module, "reconstruct") and self._originals is not None:
            recon = pl_module.reconstruct(self._originals, self._original_labels if conditional else None).cpu()
            # rows of originals followed by rows of their reconstructions
            nrow = 8
            pairs = [t for i in range(0, len(recon), nrow) for t in (self._originals[i : i + nrow], recon[i : i + nrow])]
            grids["reconstructions"] = torch.cat(pairs)
        out = Path(trainer.default_root_dir) / self.folder
        out.mkdir(parents=True, exist_ok=True)
        names = getattr(trainer.datamodule, "class_names", None) if conditional else None
        for name, images in grids.items():
            path = out / f"{name}_epoch{trainer.current_epoch:03d}.png"
            save_grid(images, path, nrow=8, row_labels=names if name == "samples" else None)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"val/{name}", images=[str(path)], step=trainer.global_step,
                                     caption=[f"epoch {trainer.current_epoch}"])


def due(trainer: Trainer, every_n_epochs: int) -> bool:
    """Whether a per-validation-epoch job runs now: every ``every_n_epochs`` epochs and at the
    last epoch, never during the sanity check."""
    if trainer.sanity_checking:
        return False
    last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
    return (trainer.current_epoch + 1) % every_n_epochs == 0 or last_epoch

"""Generated sentences each validation epoch: a text file in the run directory, a W&B table,
and their BLEU against the validation sentences and self-BLEU among themselves; for a
conditional model, the share of them that the data's bag-of-words classifier assigns to the
class they were drawn for."""

from __future__ import annotations

from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from genlab.callbacks.samples import due
from genlab.metrics.text_quality import References, draw_sentences, quality_diversity, to_sentences


class TextSamples(Callback):
    """Logs ``val/bleu{2,3,4}`` and ``val/self_bleu{2,3,4}`` of ``num_samples`` sentences drawn
    with the model's sampling settings (seeded, so epochs compare and every process agrees), and
    writes the first ``num_shown`` of them, with reconstructions of validation sentences when the
    model has ``reconstruct``, to ``<run dir>/samples/text_epoch{E:03d}.txt`` and a W&B table.
    A conditional model draws every class in turn, each line written with its class name, and
    logs ``val/class_accuracy`` (the bag-of-words classifier of the data's labels on the samples,
    ``TextDataModule.classifier``) beside ``val/classifier_accuracy`` (its balanced accuracy on
    the validation sentences: what lines as recognisable as real ones would score).
    """

    def __init__(self, num_samples: int = 500, num_shown: int = 20, every_n_epochs: int = 1, seed: int = 0,
                 folder: str = "samples") -> None:
        self.num_samples, self.num_shown, self.every_n_epochs = num_samples, num_shown, every_n_epochs
        self.seed, self.folder = seed, folder
        self._references: References | None = None
        self._originals: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._classifier = None
        self._real_accuracy = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        data = trainer.datamodule
        self._references = References(data.token_lists("val"), max_n=4)
        if getattr(pl_module, "conditional", False):
            self._classifier = data.classifier()
            self._real_accuracy = self._classifier.accuracy(data.token_lists("val"), data.labels("val"), balanced=True)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._originals is None and batch_idx == 0:
            labels = pl_module.labels_of(batch)
            n = min(8, self.num_shown)
            self._originals = (batch[0][:n].detach().cpu(), None if labels is None else labels[:n].detach().cpu())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._references is None or not due(trainer, self.every_n_epochs):
            return
        labels = pl_module.sample_labels(self.num_samples) if getattr(pl_module, "conditional", False) else None
        samples = draw_sentences(pl_module, self.num_samples, seed=self.seed, labels=labels)
        metrics = quality_diversity(samples, self._references)
        if self._classifier is not None:
            metrics["class_accuracy"] = self._classifier.accuracy(samples, labels)
            metrics["classifier_accuracy"] = self._real_accuracy
        for name, value in metrics.items():  # the same on every process
            pl_module.log(f"val/{name}", value, prog_bar=name == "bleu4", sync_dist=True)
        self._write(trainer, pl_module, samples[: self.num_shown], None if labels is None else labels[: self.num_shown])

    @rank_zero_only
    def _write(self, trainer: Trainer, pl_module: LightningModule, samples: list[list[int]],
               labels: torch.Tensor | None) -> None:
        tokenizer = trainer.datamodule.tokenizer
        names = trainer.datamodule.class_names if labels is not None else None
        kind = (lambda what, i: f"{what} ({names[int(labels[i])]})") if names else (lambda what, i: what)
        rows = [(kind("sample", i), tokenizer.decode(s)) for i, s in enumerate(samples)]
        if hasattr(pl_module, "reconstruct") and self._originals is not None:
            originals, original_labels = self._originals
            recon = to_sentences(pl_module.reconstruct(originals, original_labels).cpu())
            for original, sentence in zip(originals.tolist(), recon):
                rows += [("original", tokenizer.decode(original)), ("reconstruction", tokenizer.decode(sentence))]
        out = Path(trainer.default_root_dir) / self.folder
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"text_epoch{trainer.current_epoch:03d}.txt"
        path.write_text("".join(f"{kind}\t{text}\n" for kind, text in rows), encoding="utf-8")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(key="val/text_samples", columns=["epoch", "kind", "text"],
                                data=[[trainer.current_epoch, kind, text] for kind, text in rows],
                                step=trainer.global_step)

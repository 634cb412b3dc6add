"""Generated sentences each validation epoch: a text file in the run directory, a W&B table,
and their BLEU against the validation sentences and self-BLEU among themselves."""

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
    """

    def __init__(self, num_samples: int = 500, num_shown: int = 20, every_n_epochs: int = 1, seed: int = 0,
                 folder: str = "samples") -> None:
        self.num_samples, self.num_shown, self.every_n_epochs = num_samples, num_shown, every_n_epochs
        self.seed, self.folder = seed, folder
        self._references: References | None = None
        self._originals: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._references = References(trainer.datamodule.token_lists("val"), max_n=4)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._originals is None and batch_idx == 0:
            self._originals = batch[0][: min(8, self.num_shown)].detach().cpu()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._references is None or not due(trainer, self.every_n_epochs):
            return
        samples = draw_sentences(pl_module, self.num_samples, seed=self.seed)
        for name, value in quality_diversity(samples, self._references).items():  # the same on every process
            pl_module.log(f"val/{name}", value, prog_bar=name == "bleu4", sync_dist=True)
        self._write(trainer, pl_module, samples[: self.num_shown])

    @rank_zero_only
    def _write(self, trainer: Trainer, pl_module: LightningModule, samples: list[list[int]]) -> None:
        tokenizer = trainer.datamodule.tokenizer
        rows = [("sample", tokenizer.decode(s)) for s in samples]
        if hasattr(pl_module, "reconstruct") and self._originals is not None:
            recon = to_sentences(pl_module.reconstruct(self._originals).cpu())
            for original, sentence in zip(self._originals.tolist(), recon):
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

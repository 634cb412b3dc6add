"""``python eval.py ckpt_path=...`` / ``genlab-eval``: test a checkpoint, write ``metrics.json``."""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.checkpoint import check_ckpt_file, model_from_checkpoint, run_dir_of, tokenizer_from_checkpoint
from genlab.metrics.inception import WEIGHTS_NAME, find_weights, inception_fid
from genlab.train import make_loggers
from genlab.utils.config import CONF_DIR
from genlab.utils.errors import GenlabError
from genlab.utils.runs import checkpoint_of
from genlab.utils.task import format_metrics, run_task
from genlab.utils.trainer_setup import resolve_trainer_kwargs

log = logging.getLogger("genlab.eval")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild model and data from the checkpoint's own config, load its weights, and test."""
    # a bad value or a missing file is reported before torch and Lightning are imported
    if cfg.split not in ("test", "val"):
        raise GenlabError(f"split={cfg.split!r} is unknown; choose test or val.")
    cfg.ckpt_path = checkpoint_of(str(cfg.ckpt_path), Path(cfg.paths.log_dir) / "train")
    check_ckpt_file(cfg.ckpt_path)
    inception_weights = find_weights(cfg.metrics.get("inception_weights"))
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    trainer_kwargs = resolve_trainer_kwargs(OmegaConf.to_container(cfg.trainer, resolve=True))
    model, run_cfg, ckpt = model_from_checkpoint(cfg.ckpt_path)
    if cfg.get("nll_samples") is not None and hasattr(model, "nll_samples"):
        model.nll_samples = cfg.nll_samples
    if hasattr(model, "nll_examples"):  # the bound over the split, or the examples asked for
        model.nll_examples = cfg.get("nll_examples")
    pl.seed_everything(cfg.seed, workers=True)
    given = {k: v for k, v in cfg.data.items() if v is not None}  # null: the checkpoint's own value
    datamodule = instantiate(OmegaConf.merge(run_cfg.data, paced_batches(model, run_cfg.data, given), given))
    tokenizer = tokenizer_from_checkpoint(ckpt)
    if tokenizer is not None:  # the vocabulary the model was trained with, whatever the corpus holds now
        datamodule.tokenizer = tokenizer
    from genlab.callbacks.progress import with_progress_bar

    trainer = instantiate(trainer_kwargs, callbacks=with_progress_bar([], trainer_kwargs))
    run = trainer.validate if cfg.split == "val" else trainer.test
    results = run(model, datamodule=datamodule, verbose=False)[0]
    metrics = {k: float(v) for k, v in results.items()}
    if cfg.metrics.sample_quality and tokenizer is not None:
        metrics.update(text_sample_metrics(model, datamodule, cfg.split, cfg.metrics.num_samples, cfg.seed,
                                           cfg.metrics.get("temperatures")))
    elif cfg.metrics.sample_quality and hasattr(model, "generate"):
        metrics.update(sample_metrics(model, datamodule, cfg.split, cfg.metrics.num_samples, cfg.seed, inception_weights))
        if inception_weights is None:
            log.info("Inception FID skipped: no weights given or cached (metrics.inception_weights=<path to %s>)",
                     WEIGHTS_NAME)

    out = run_dir_of(cfg.ckpt_path) / "metrics.json"
    record = {
        "checkpoint": str(cfg.ckpt_path),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "split": cfg.split,
        "data_info": getattr(datamodule, "info", {}),
        "metrics": metrics,
    }
    out.write_text(json.dumps(record, indent=2))
    run_choices = {"model": run_cfg.model._target_.rsplit(".", 1)[-1].lower(), "data": datamodule.dataset}
    for logger in make_loggers(cfg, choices=run_choices, job_type="eval"):
        logger.log_hyperparams({"eval": OmegaConf.to_container(cfg, resolve=True), "run_config": ckpt["genlab"]["config"]})
        logger.log_metrics(metrics)
    log.info("Metrics (%s split) of %s:\n%s", cfg.split, cfg.ckpt_path, format_metrics(metrics))
    log.info("Written to %s", out)
    return metrics


PACED_SAMPLES = 100  # importance samples per example that a test batch of the usual size is paced for


def paced_batches(model, run_data: DictConfig, data: Mapping[str, Any]) -> dict:
    """With more than ``PACED_SAMPLES`` importance samples (``nll_samples=5000`` as papers report),
    test batches get smaller by the same factor and each decoding pass takes as many more samples,
    so a batch costs, and the progress bar moves, as with 100 samples, and memory stays the same.
    A ``data.eval_batch_size`` given to eval.py wins."""
    samples = getattr(model, "nll_samples", 0)
    if samples <= PACED_SAMPLES or data.get("eval_batch_size"):
        return {}
    scale = samples / PACED_SAMPLES
    usual = run_data.get("eval_batch_size") or run_data.get("batch_size") or 1
    batch = max(1, int(usual / scale))
    model.nll_chunk = min(samples, max(1, int(model.nll_chunk * usual / batch)))
    log.info("test/nll with %d samples an example: test batches of %d (from %d), %d samples per pass",
             samples, batch, usual, model.nll_chunk)
    return {"eval_batch_size": batch}


def sample_metrics(model, datamodule, split: str, num_samples: int, seed: int, inception_weights=None) -> dict[str, float]:
    """Sample-quality metrics of ``num_samples`` generated images against the split's images
    (and Inception FID when its weights are at hand). A class-conditional model draws every class
    in turn and adds ``class_accuracy`` (beside ``classifier_accuracy``, the feature net's on the
    split's real images) and ``intra_fid`` (FID per class, averaged)."""
    import torch

    from genlab.metrics.feature_nets import load_feature_net
    from genlab.metrics.image_quality import class_accuracy, extract, feature_metrics, intra_class_fid

    z = model.sample_latents(num_samples, generator=torch.Generator().manual_seed(seed))
    labels = model.sample_labels(num_samples)  # None for an unconditional model
    fake = torch.cat(list(model.generate_batches(z, labels)))
    real = datamodule.images(split)
    net = load_feature_net(datamodule.dataset)
    real_f, fake_f = extract(net, real), extract(net, fake)
    quality = feature_metrics(real_f, fake_f, labels=labels)
    if labels is not None:
        real_labels = datamodule.labels(split)
        quality["classifier_accuracy"] = class_accuracy(real_f, real_labels)
        quality["intra_fid"] = intra_class_fid(real_f, real_labels, fake_f, labels)
    if inception_weights is not None:
        quality["inception_fid"] = inception_fid(real, fake, inception_weights)
    return {f"{split}/{name}": value for name, value in quality.items()}


def text_sample_metrics(model, datamodule, split: str, num_samples: int, seed: int,
                        temperatures=None) -> dict[str, float]:
    """BLEU-2..4 of ``num_samples`` sentences against the split and self-BLEU-2..4 among them, at
    the model's sampling settings, or per temperature (keys ``.../bleu4@t0.7``) when given. A
    conditional model draws every class in turn and adds ``class_accuracy``: the share of its
    sentences that the data's bag-of-words classifier assigns to their class, beside
    ``classifier_accuracy``, that classifier's balanced accuracy on the split's real sentences."""
    from genlab.metrics.text_quality import References, draw_sentences, quality_diversity

    references = References(datamodule.token_lists(split), max_n=4)
    labels = model.sample_labels(num_samples)
    classifier = datamodule.classifier() if labels is not None else None
    metrics = {}
    if classifier is not None:
        metrics[f"{split}/classifier_accuracy"] = classifier.accuracy(datamodule.token_lists(split),
                                                                      datamodule.labels(split), balanced=True)
    for t in temperatures or [None]:
        sample = {} if t is None else {"temperature": float(t)}
        suffix = "" if t is None else f"@t{float(t):g}"
        sentences = draw_sentences(model, num_samples, seed=seed, labels=labels, **sample)
        found = quality_diversity(sentences, references)
        if classifier is not None:
            found["class_accuracy"] = classifier.accuracy(sentences, labels)
        metrics.update({f"{split}/{k}{suffix}": v for k, v in found.items()})
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    main()

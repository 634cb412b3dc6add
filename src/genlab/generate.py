"""``python generate.py ckpt_path=...`` / ``genlab-generate``: sample grids or sentences, and latent
interpolations, from a checkpoint alone (model and tokenizer are rebuilt from what it holds)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from genlab.checkpoint import model_from_checkpoint, run_dir_of, tokenizer_from_checkpoint
from genlab.utils.config import CONF_DIR
from genlab.utils.errors import GenlabError
from genlab.utils.runs import checkpoint_of
from genlab.utils.task import run_task

if TYPE_CHECKING:
    import torch

log = logging.getLogger("genlab.generate")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (stays in the Gaussian's shell)."""
    import torch

    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


DEFAULT_COUNT = {"samples": 64, "interpolate": 8}  # a grid of 8 x 8; 8 rows of interpolations


def _latents(model, cfg: DictConfig, tokenizer=None) -> tuple[torch.Tensor, int]:
    """The latent batch to decode and the number per row: prior draws, or rows of interpolations
    between two prior draws or between two given sentences (``sentences=[a, b]``, text VAEs)."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.mode == "samples":
        return model.sample_latents(cfg.num_samples, generator=gen), cfg.nrow
    if model.latent_dim == 0:
        raise GenlabError("mode=interpolate needs a model with a latent space; a language model has none.")
    if cfg.get("sentences"):
        # a VAE's posterior mean lives in the prior's space; a text GAN's code does not (its samples
        # start from noise that no sentence maps back to)
        if tokenizer is None or not hasattr(model, "encode") or hasattr(model, "generator") or len(cfg.sentences) != 2:
            raise GenlabError("sentences=[first, second] interpolates between two sentences with a text VAE "
                              "(model=text_vae); other models interpolate between prior draws (leave sentences unset).")
        from genlab.data.tokenizers import EOS, PAD

        ids = [tokenizer.encode(s) + [EOS] for s in cfg.sentences]
        x = torch.full((2, max(map(len, ids))), PAD, dtype=torch.long)
        for row, sentence in enumerate(ids):
            x[row, : len(sentence)] = torch.tensor(sentence)
        ends = model.encode(x).cpu().view(2, 1, -1)
    else:
        ends = model.sample_latents(2 * cfg.num_samples, generator=gen).view(2, cfg.num_samples, -1)
    t = torch.linspace(0, 1, cfg.steps).view(1, -1, 1)
    return slerp(ends[0].unsqueeze(1), ends[1].unsqueeze(1), t).flatten(0, 1), cfg.steps


def class_labels(model, cfg: DictConfig, class_names: list[str] | None) -> tuple[torch.Tensor | None, list[str] | None]:
    """The classes to draw for (``labels=[3, 3, 7]``, by name where the data names its classes:
    ``labels=[sandal]``; one class alone, ``labels=tragedies``, draws ``num_samples`` of it; ``labels=all``: one row of ``nrow`` per class; or
    ``labels=[a]`` / ``[a, b]`` with ``mode=interpolate``: within class a / from class a to b at
    fixed noise), and the row names of the grid; ``(None, None)`` for an unconditional model."""
    import torch

    labels = cfg.get("labels")
    if not getattr(model, "conditional", False):
        if labels is not None:
            raise GenlabError("labels=... needs a class-conditional model (trained with model.conditional=true); "
                              "this checkpoint's model is unconditional.")
        return None, None
    names = class_names or [str(c) for c in range(model.num_classes)]
    if labels is None or labels == "all":
        if cfg.mode == "samples":
            return torch.arange(model.num_classes).repeat_interleave(cfg.nrow), names
        rows = torch.arange(cfg.num_samples) % model.num_classes  # interpolations within each class in turn
        return rows.repeat_interleave(cfg.steps), [names[c] for c in rows]
    single = isinstance(labels, (str, int))  # one class: num_samples of it
    labels = [labels] if single else list(labels)
    unknown = [c for c in labels if isinstance(c, str) and c not in names]
    if unknown:
        raise GenlabError(f"labels={labels}: {unknown[0]!r} is not a class of this model; its classes are "
                          f"{', '.join(names)} (or their numbers 0..{model.num_classes - 1}).")
    labels = [names.index(c) if isinstance(c, str) else c for c in labels]
    if not all(isinstance(c, int) for c in labels):
        raise GenlabError(f"labels={labels!r}: give class numbers or names, e.g. labels=[3,7], or labels=all.")
    if any(not 0 <= c < model.num_classes for c in labels):
        raise GenlabError(f"labels={list(labels)}: this model's classes are 0..{model.num_classes - 1}.")
    if cfg.mode == "samples":
        return torch.tensor(labels * (cfg.num_samples if single else 1)), None
    if len(labels) > 2:
        raise GenlabError("mode=interpolate takes labels=[a] (within class a) or labels=[a,b] (from a to b).")
    if len(labels) == 1:
        return torch.full((cfg.num_samples * cfg.steps,), labels[0]), None
    one_hot = torch.eye(model.num_classes)
    t = torch.linspace(0, 1, cfg.steps).view(-1, 1)
    row = (1 - t) * one_hot[labels[0]] + t * one_hot[labels[1]]  # [steps, C]
    return row.repeat(cfg.num_samples, 1), [f"{names[labels[0]]} -> {names[labels[1]]}"] * cfg.num_samples


def generate(cfg: DictConfig) -> dict[str, float]:
    """Decode latents of ``cfg.mode`` from the checkpoint's model; the checks of the values and of
    ``ckpt_path`` come before torch is imported."""
    if cfg.mode not in DEFAULT_COUNT:
        raise GenlabError(f"mode={cfg.mode!r} is unknown; choose samples or interpolate.")
    if cfg.num_samples is None:
        cfg.num_samples = DEFAULT_COUNT[cfg.mode]
    if cfg.num_samples < 1 or cfg.steps < 2:
        raise GenlabError("num_samples must be at least 1 and steps at least 2.")
    cfg.ckpt_path = checkpoint_of(str(cfg.ckpt_path), Path(cfg.paths.log_dir) / "train")
    model, run_cfg, ckpt = model_from_checkpoint(cfg.ckpt_path)
    import torch

    from genlab.data.mnist import CLASS_NAMES

    tokenizer = tokenizer_from_checkpoint(ckpt)
    names = ckpt.get("genlab", {}).get("data_info", {}).get("class_names") or CLASS_NAMES.get(run_cfg.data.get("dataset"))
    labels, row_names = class_labels(model, cfg, names)
    if labels is not None and cfg.mode == "samples":
        cfg.num_samples = len(labels)
    z, nrow = _latents(model, cfg, tokenizer)
    if labels is not None and labels.dim() == 2:  # from one class to another: the same noise along each row
        z = model.sample_latents(cfg.num_samples, generator=torch.Generator().manual_seed(cfg.seed))
        z = z.repeat_interleave(cfg.steps, dim=0)
    default = run_dir_of(cfg.ckpt_path) / "generated" / f"{cfg.mode}_{len(z)}"
    if tokenizer is not None:
        line_names = None
        if labels is not None:  # each sentence's class; a row between two classes says so once
            line_names = ([names[int(c)] for c in labels] if labels.dim() == 1
                          else [row_names[i // nrow] if i % nrow == 0 else "" for i in range(len(labels))])
        return _write_sentences(model, tokenizer, z, nrow, cfg, Path(cfg.out) if cfg.out else default.with_suffix(".txt"),
                                labels, line_names)
    from genlab.utils.images import save_grid

    images = (model.generate(z) if labels is None else model.generate(z, labels)).cpu().clamp(0, 1)
    out = Path(cfg.out) if cfg.out else default.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(images, out, nrow=nrow, row_labels=row_names)
    log.info("Wrote %d images to %s", len(images), out)
    if cfg.save_tensor:  # a conditional model's images come with the labels they were drawn for
        torch.save(images if labels is None else {"images": images, "labels": labels}, out.with_suffix(".pt"))
        log.info("Wrote the tensor to %s", out.with_suffix(".pt"))
    return {"num_images": float(len(images))}


def _write_sentences(model, tokenizer, z: torch.Tensor, nrow: int, cfg: DictConfig, out: Path,
                     labels: torch.Tensor | None = None, names: list[str] | None = None) -> dict[str, float]:
    """Decode ``z`` (for ``labels``) to sentences with the model's sampling settings (overridden
    by ``temperature``/``top_k``/``greedy`` when given), print them and write them, one per line;
    a conditional model's as ``class<TAB>sentence``, the labelled-file format of ``data.label=column``."""
    import torch

    from genlab.metrics.text_quality import to_sentences

    sample = {k: cfg[k] for k in ("temperature", "top_k", "greedy") if cfg.get(k) is not None}
    torch.manual_seed(cfg.seed)
    ids = model.generate(z, **sample) if labels is None else model.generate(z, labels, **sample)
    sentences = [tokenizer.decode(s) for s in to_sentences(ids.cpu())]
    if names is not None:
        sentences = [f"{name}\t{s}" for name, s in zip(names, sentences)]
    lines = [("" if cfg.mode == "samples" or i % nrow else "\n") + s for i, s in enumerate(sentences)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).lstrip("\n") + "\n", encoding="utf-8")
    print("\n".join(lines).lstrip("\n"))
    log.info("Wrote %d sentences to %s", len(sentences), out)
    return {"num_sentences": float(len(sentences))}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="generate")
def main(cfg: DictConfig) -> float | None:
    return run_task(generate, cfg)


if __name__ == "__main__":
    main()

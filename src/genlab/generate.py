"""``python generate.py ckpt_path=...`` / ``genlab-generate``: sample grids and latent
interpolations from a checkpoint alone (the model is rebuilt from the config inside it)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from genlab.checkpoint import model_from_checkpoint, run_dir_of
from genlab.utils.config import CONF_DIR
from genlab.utils.errors import GenlabError
from genlab.utils.task import run_task

log = logging.getLogger("genlab.generate")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (stays in the Gaussian's shell)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def generate(cfg: DictConfig) -> dict[str, float]:
    from torchvision.utils import make_grid, save_image

    if cfg.mode not in ("samples", "interpolate"):
        raise GenlabError(f"mode={cfg.mode!r} is unknown; choose samples or interpolate.")
    if cfg.num_samples < 1 or cfg.steps < 2:
        raise GenlabError("num_samples must be at least 1 and steps at least 2.")
    model, _, _ = model_from_checkpoint(cfg.ckpt_path)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.mode == "samples":
        z, nrow = model.sample_latents(cfg.num_samples, generator=gen), cfg.nrow
    else:
        ends = model.sample_latents(2 * cfg.num_samples, generator=gen).view(2, cfg.num_samples, -1)
        t = torch.linspace(0, 1, cfg.steps).view(1, -1, 1)
        z = slerp(ends[0].unsqueeze(1), ends[1].unsqueeze(1), t).flatten(0, 1)
        nrow = cfg.steps
    images = model.generate(z).cpu().clamp(0, 1)
    out = Path(cfg.out) if cfg.out else run_dir_of(cfg.ckpt_path) / "generated" / f"{cfg.mode}_{len(images)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(images, nrow=nrow, padding=2, pad_value=1.0), out)
    log.info("Wrote %d images to %s", len(images), out)
    if cfg.save_tensor:
        torch.save(images, out.with_suffix(".pt"))
        log.info("Wrote the tensor to %s", out.with_suffix(".pt"))
    return {"num_images": float(len(images))}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="generate")
def main(cfg: DictConfig) -> float | None:
    return run_task(generate, cfg)


if __name__ == "__main__":
    main()

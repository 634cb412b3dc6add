"""The MLP VAE's training step in parts, genlab's objective against the hand-written one, in one
process and outside Lightning: forward + loss, backward, optimizer step (ms, medians).

    python scripts/vae_step_parts.py [--batch-size 128] [--steps 300] [--rounds 3]

The Adam step is timed with the plain loop over tensors and with the fused kernel genlab picks
(``genlab.models.base.make_optimizer``). What this leaves out of genlab's step time is the cost
of Lightning's loop and of the data loader (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from genlab.data.image_sources import load_bundled, split_bundled
from genlab.models.base import make_optimizer
from genlab.utils.config import compose_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cfg = compose_config("train", ["model=vae"], output_dir=tempfile.gettempdir())
    (images, _), _ = split_bundled(*load_bundled())
    images = images.unsqueeze(1)
    model = instantiate(cfg.model)
    model.step_logs_due = lambda: False  # no trainer to log to
    enc, dec = model.encoder, model.decoder

    def raw_loss(x: torch.Tensor) -> torch.Tensor:
        mu, logvar = enc(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1)
        return (recon + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)).mean()

    def genlab_loss(x: torch.Tensor) -> torch.Tensor:
        return model._step((x,), "train")

    def run(loss_fn, fused: bool) -> list[float]:
        factory = instantiate(cfg.model.optimizer)
        opt = make_optimizer(factory, model.parameters()) if fused else factory(params=model.parameters())
        order, parts = torch.randperm(len(images)), []
        for s in range(args.steps):
            i = (s * args.batch_size) % (len(images) - args.batch_size)
            x = images[order[i : i + args.batch_size]].float() / 255
            t0 = time.perf_counter()
            loss = loss_fn(x)
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            parts.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        return [statistics.median(p) * 1e3 for p in zip(*parts[20:])]

    print(f"batch {args.batch_size}, {args.steps} steps per round; ms: forward+loss, zero_grad+backward, optimizer step")
    for _ in range(args.rounds):  # interleaved
        for name, fn, fused in (("raw, plain Adam", raw_loss, False), ("raw, fused Adam", raw_loss, True),
                                ("genlab objective, fused Adam", genlab_loss, True)):
            fwd, bwd, step = run(fn, fused)
            print(f"  {name:30s} {fwd:6.3f} {bwd:6.3f} {step:6.3f}   total {fwd + bwd + step:6.3f}", flush=True)


if __name__ == "__main__":
    main()

"""The MLP VAE's training step in parts (ms, medians).

    python scripts/vae_step_parts.py [--batch-size 128] [--steps 300] [--rounds 3]

1. genlab's objective against the hand-written one, in one process and outside Lightning:
   forward + loss, backward, optimizer step. The Adam step is timed with the plain loop over
   tensors and with the fused kernel genlab picks (``genlab.models.base.make_optimizer``).
2. The same step inside ``train.py``'s code path (``genlab.train.train``, bundled data, CSV
   logger, ``callbacks=none``), split at Lightning's hooks: what happens between two batches
   (Lightning's loop, the data loader, the batch transfer and uint8 -> float), before the
   objective runs (hooks, the optimizer's and Lightning's wrappers around the closure), the
   objective, the backward pass and the rest. The parts that are neither forward, backward nor
   the optimizer's update are the framework's cost (see docs/benchmarks.md). The split needs
   Lightning's backward and optimizer hooks, so these steps take Lightning's whole road
   (``genlab.utils.direct_step`` steps aside for callbacks that use those hooks).
3. Lightning's profiler: how often Lightning enters ``trainer.profiler.profile(name)`` per training
   step in part 2, and what one use costs with Lightning's default (``PassThroughProfiler``) and
   with genlab's ``NoProfiler``, which ``train.py`` passes when the config names no profiler.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import timeit
import warnings

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from pytorch_lightning import Callback

from genlab.data.image_sources import load_bundled, split_bundled
from genlab.models.base import make_optimizer
from genlab.utils.config import compose_config


class StepParts(Callback):
    """Wall time between Lightning's hooks within each training batch, after ``skip`` batches."""

    PARTS = ("between batches: loop, data loader, transfer", "before the objective: hooks, wrappers",
             "forward + loss (the objective)", "closure: zero_grad, bookkeeping", "backward",
             "after backward, before the update", "optimizer update, then the loop's bookkeeping")

    def __init__(self, skip: int = 20) -> None:
        self.skip, self.batches, self.last = skip, 0, None
        self.times: dict[str, list[float]] = {p: [] for p in self.PARTS}

    def _mark(self, part: int) -> None:
        now = time.perf_counter()
        if self.last is not None and self.batches > self.skip:
            self.times[self.PARTS[part]].append(now - self.last)
        self.last = now

    def setup(self, trainer, pl_module, stage: str) -> None:
        step = pl_module.training_step
        profile = trainer.profiler.profile
        self.profile_calls, self.profile_calls_at = 0, {}

        def counted_profile(name):
            self.profile_calls += 1
            return profile(name)

        trainer.profiler.profile = counted_profile

        def timed_step(*args, **kwargs):
            self._mark(1)
            out = step(*args, **kwargs)
            self._mark(2)
            return out

        pl_module.training_step = timed_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches += 1
        self.profile_calls_at[self.batches] = self.profile_calls
        self._mark(0)

    def profile_calls_per_step(self) -> float:
        first, last = self.skip + 1, self.batches  # whole steps between the starts of these batches
        return (self.profile_calls_at[last] - self.profile_calls_at[first]) / (last - first)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._mark(3)

    def on_after_backward(self, trainer, pl_module) -> None:
        self._mark(4)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._mark(5)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._mark(6)


PARTS = StepParts()


def inside_lightning(batch_size: int, steps: int) -> dict[str, float]:
    """Medians (ms) of the step's parts in ``train.py``'s code path; also fills ``PARTS``."""
    from genlab.train import train

    global PARTS
    PARTS = StepParts()
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_config("train", [
            "model=vae", "data.source=bundled", f"data.batch_size={batch_size}", "trainer.max_epochs=-1",
            f"trainer.max_steps={steps}", "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
            "logger=csv", "callbacks=none", "test=false", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "+callbacks.parts._target_=__main__.parts",
        ], output_dir=out)
        train(cfg)
    return {part: statistics.median(t) * 1e3 for part, t in PARTS.times.items()}


def parts() -> StepParts:
    return PARTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

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

    print(f"\ninside train.py's code path (batch {args.batch_size}, {args.steps} steps per round), ms:")
    rounds = [inside_lightning(args.batch_size, args.steps) for _ in range(args.rounds)]
    for part in StepParts.PARTS:
        print(f"  {part:52s} " + " ".join(f"{r[part]:6.3f}" for r in rounds), flush=True)
    print(f"  {'whole step':52s} " + " ".join(f"{sum(r.values()):6.3f}" for r in rounds))
    print(f"\nLightning's profiler: {PARTS.profile_calls_per_step():.1f} uses per training step in the last round; "
          "us per use (a hook name formatted, the context entered and left), median of 5 x 20,000:")
    print("  " + ", ".join(f"{name} {us:.2f}" for name, us in profiler_use_us().items()))


def profiler_use_us() -> dict[str, float]:
    from pytorch_lightning.profilers import PassThroughProfiler

    from genlab.utils.profiler import NoProfiler

    out = {}
    for profiler in (PassThroughProfiler(), NoProfiler()):
        def use(profiler=profiler) -> None:
            with profiler.profile(f"[LightningModule]{profiler.__class__.__name__}.on_train_batch_start"):
                pass

        out[type(profiler).__name__] = 1e6 * statistics.median(timeit.repeat(use, number=20_000, repeat=5)) / 20_000
    return out


if __name__ == "__main__":
    main()

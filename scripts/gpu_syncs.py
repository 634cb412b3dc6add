"""Where genlab's training step makes the host wait for the GPU, and what each wait costs.

    python scripts/gpu_syncs.py                       # needs a CUDA device
    python scripts/gpu_syncs.py --models vae dcgan --reps 3 --json syncs.json

1. Counts the synchronizing operations during timed training steps with torch's sync debug mode
   (``torch.cuda.set_sync_debug_mode``), by the line that ran them and the genlab line that led
   there. It sees reads of device values (``.item()``, ``bool(tensor)``), not the stream wait that a
   copy from pageable host memory to the device makes (the batch's transfer with
   ``data.on_device=false``).
2. Times genlab's step as it is against the raw loop and variants that put each wait back
   (interleaved repetitions, median images/s; ``scripts/benchmark.py``'s runs and raw loop):
   - ``NaN check read each step``: ``loss_is_finite`` reads the loss at every step (as on the
     host) instead of queueing the check;
   - ``batches from the host``: ``data.on_device=false``, each batch copied from host memory;
   - ``both (as before)``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import statistics
import sys
import traceback
import warnings
from pathlib import Path

import torch
from pytorch_lightning import Callback

import benchmark  # scripts/benchmark.py

SITES: collections.Counter = collections.Counter()
COUNTED = {"steps": 0}


def where(filename: str, lineno: int, name: str = "") -> str:
    path = Path(filename)
    for anchor in ("genlab", "pytorch_lightning", "lightning_fabric", "torch", "torchmetrics"):
        if anchor in path.parts:
            path = Path(*path.parts[len(path.parts) - 1 - path.parts[::-1].index(anchor):])
            break
    return f"{path}:{lineno}" + (f" ({name})" if name else "")


class SyncCounter(Callback):
    """Sync debug mode on from batch ``warmup`` to the end of training; each synchronizing
    operation is counted by (its line, the innermost genlab line above it)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seen, self.saved = warmup, 0, None

    def record(self, message, category, filename, lineno, file=None, line=None) -> None:
        if "synchronizing" not in str(message):
            return self.saved(message, category, filename, lineno, file, line)
        stack = traceback.extract_stack()[:-1]
        ours = [f for f in stack if "genlab" in Path(f.filename).parts and "scripts" not in Path(f.filename).parts]
        via = where(ours[-1].filename, ours[-1].lineno, ours[-1].name) if ours else "-"
        SITES[(where(filename, lineno), via)] += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.warmup:
            self.saved = warnings.showwarning
            warnings.simplefilter("always")
            warnings.showwarning = self.record
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen > self.warmup:
            COUNTED["steps"] += 1

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode(0)
        if self.saved is not None:
            warnings.showwarning = self.saved


def count_syncs(model: str, batch_size: int, warmup: int, steps: int) -> dict:
    SITES.clear()
    COUNTED["steps"] = 0
    benchmark.genlab_run(model, batch_size, warmup, steps, "cuda",
                         [f"+callbacks.syncs._target_={SyncCounter.__module__}.SyncCounter", f"+callbacks.syncs.warmup={warmup}"])
    steps_seen = max(1, COUNTED["steps"])
    return {"model": model, "batch_size": batch_size, "steps": steps_seen,
            "per_step": sum(SITES.values()) / steps_seen,
            "sites": [{"line": line, "via": via, "per_step": n / steps_seen} for (line, via), n in SITES.most_common()]}


VARIANTS = {  # name: (GenerativeModule.nonfinite_deferred: False reads the check each step, extra overrides)
    "genlab": (None, []),
    "NaN check read each step": (False, []),
    "batches from the host": (None, ["data.on_device=false"]),
    "both (as before)": (False, ["data.on_device=false"]),
}


def timings(model: str, batch_size: int, warmup: int, seconds: float, reps: int, device: str = "cuda") -> dict:
    steps = benchmark.steps_for(model, batch_size, seconds, device)
    runs: dict[str, list[float]] = {name: [] for name in ["raw_tuned", *VARIANTS]}
    for name in benchmark.interleaved(runs, reps):
        if name == "raw_tuned":
            runs[name].append(benchmark.raw_loop(model, batch_size, warmup, steps, device, tuned=True))
            continue
        deferred, extra = VARIANTS[name]
        runs[name].append(benchmark.genlab_run(model, batch_size, warmup, steps, device, extra,
                                               nonfinite_deferred=deferred))
    return {"model": model, "batch_size": batch_size, "steps": steps, "runs": runs,
            "median": {name: statistics.median(v) for name, v in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vae", "dcgan"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run of the timings")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("needs a CUDA device")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    warmup = 5
    out = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
           "counts": [], "timings": []}
    for model in args.models if args.device == "cuda" else []:
        c = count_syncs(model, args.batch_size, warmup, 120)  # logged steps (every 50) included
        out["counts"].append(c)
        print(f"{model} batch {args.batch_size}: {c['per_step']:.2f} synchronizing operations per training step")
        for s in c["sites"]:
            print(f"  {s['per_step']:5.2f}/step  {s['line']}  <- {s['via']}")
    for model in args.models:
        t = timings(model, args.batch_size, warmup, args.seconds, args.reps, args.device)
        out["timings"].append(t)
        base = t["median"]["genlab"]
        print(f"{model} batch {args.batch_size} ({t['steps']} steps), img/s: " + ", ".join(
            f"{name} {v:.0f} ({v / base:.2f}x)" for name, v in t["median"].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Wall time of one 4-job sweep run one job after another (Hydra's basic launcher) and with the
joblib launcher (2 workers), then the comparison table of the sequential sweep.

    python scripts/benchmark_sweep.py                # VAE, 5 epochs on the bundled MNIST images
    python scripts/benchmark_sweep.py --epochs 2 --threads 1

Each job trains with ``--threads`` torch threads (default: cores / workers), so the two launchers
use the same cores. Output folders: ``outputs/benchmark_sweep/{sequential,joblib}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(name: str, launcher: list[str], epochs: int, threads: int) -> float:
    out = ROOT / "outputs" / "benchmark_sweep" / name
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *launcher, "data.source=bundled", f"trainer.max_epochs={epochs}",
         "test=false", "model.latent_dim=8,16", "model.optimizer.lr=1e-3,3e-4", f"hydra.sweep.dir={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{name} sweep failed:\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cores / workers)")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.workers)

    seq = sweep("sequential", [], args.epochs, threads)
    par = sweep("joblib", ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.workers}"], args.epochs, threads)
    print(f"4-job VAE sweep, {args.epochs} epochs each, {threads} torch thread(s) per job, {os.cpu_count()} cores\n")
    print("| launcher | wall time (s) | speed-up |\n|---|---|---|")
    print(f"| basic (sequential) | {seq:.1f} | 1.00 |")
    print(f"| joblib, {args.workers} workers | {par:.1f} | {seq / par:.2f} |\n")
    from genlab.compare import main as compare

    compare([str(ROOT / "outputs" / "benchmark_sweep" / "sequential"), "--metric", "val/elbo",
             "--columns", "val/elbo", "val/kl", "time/fit_seconds", "parameters"])


if __name__ == "__main__":
    main()

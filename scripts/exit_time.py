"""How long a process takes to end after its work, with and without genlab's quick exit
(``genlab.utils.task.quick_exit``: ``gc.freeze()`` as the last exit handler).

    python scripts/exit_time.py [--reps 5]

Two commands, each as is and with the change made or undone, repetitions interleaved; whole
command wall time and the part after the main code returned (interpreter exit), medians:

- ``python -c "import torch, pytorch_lightning"`` (the start-up floor of scripts/benchmark.py)
  and the same with ``atexit.register(gc.freeze)``;
- ``python train.py trainer.max_steps=1 test=false logger=csv`` with genlab's quick exit and
  with it undone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORTS = "import time, torch, pytorch_lightning\n{extra}\nprint('MAIN_END', time.time())"
TRAIN = ("import runpy, sys, time\nimport genlab.utils.task as task\n{extra}\n"
         "sys.argv = ['train.py', *sys.argv[1:]]\n"
         "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
         "finally:\n    print('MAIN_END', time.time())")
VARIANTS = {
    "import torch, pytorch_lightning": IMPORTS.format(extra=""),
    "  ... with gc.freeze() at exit": IMPORTS.format(extra="import atexit, gc; atexit.register(gc.freeze)"),
    "train.py, quick exit undone": TRAIN.format(extra="task.quick_exit = lambda: None"),
    "train.py (genlab's quick exit)": TRAIN.format(extra=""),
}


def run(code: str, out: str) -> tuple[float, float]:
    """(whole command, after the main code) in seconds."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code, "trainer.max_steps=1", "test=false", "logger=csv",
                           f"hydra.run.dir={out}", "optimized_metric=null"],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    end = time.time()
    main_end = float(next(line for line in proc.stdout.splitlines() if line.startswith("MAIN_END")).split()[1])
    return end - start, end - main_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for rep in range(args.reps):
        # benchmark.py's interleaved() order, written out: importing benchmark.py would load torch
        # into this process, which only launches and times the commands
        for name in (list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]):
            with tempfile.TemporaryDirectory() as out:
                times[name].append(run(VARIANTS[name], out))
    print(f"seconds, medians of {args.reps} interleaved runs: whole command, exit (after the main code returned)")
    for name, t in times.items():
        whole, exit_ = (statistics.median(x) for x in zip(*t))
        print(f"  {name:34s} {whole:6.2f} {exit_:6.2f}")


if __name__ == "__main__":
    main()

"""Two variants of genlab's training step, A and B, timed in many short interleaved pairs.

    python scripts/ab_overrides.py --a direct_step=false --b direct_step=true
    python scripts/ab_overrides.py --a direct_step=false --b direct_step=true --callbacks default --progress-bar
    python scripts/ab_overrides.py --model dcgan --batch-size 64 --a trainer.precision=32-true --b trainer.precision=bf16-mixed

Each side runs ``train.py``'s code path (``scripts/benchmark.py``'s ``genlab_run``: the bundled
MNIST images, the CSV logger, no validation) with its overrides, A then B, then B then A, and so
on; each run times ``--steps`` batches after the warm-up ones. A change of a few percent in a
step of a few milliseconds is smaller than this machine's drift over the minutes a benchmark row
takes; in pairs a second or less apart the drift mostly cancels, and the median of the pairs'
ratios is the figure to read. Prints ms per step for each side and B/A (above 1: B is faster).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import benchmark  # noqa: E402


def quartiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.3f}-{q[2]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vae")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=150, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--callbacks", default="none", help="the callbacks group of both sides (default: none)")
    parser.add_argument("--progress-bar", action="store_true", help="both sides with genlab's progress bar")
    parser.add_argument("--a", nargs="*", default=[], help="overrides of side A")
    parser.add_argument("--b", nargs="*", default=[], help="overrides of side B")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    def one(overrides: list[str]) -> float:
        rate = benchmark.genlab_run(args.model, args.batch_size, args.warmup, args.steps, "cpu", overrides,
                                    callbacks=args.callbacks, progress_bar=args.progress_bar)
        return 1e3 * args.batch_size / rate  # ms per step

    a, b = [], []
    for i in range(args.pairs):
        if i % 2 == 0:
            a.append(one(args.a)), b.append(one(args.b))
        else:
            b.append(one(args.b)), a.append(one(args.a))
    ratios = [x / y for x, y in zip(a, b)]  # B's speed over A's
    print(f"{args.model}, batch {args.batch_size}, {args.pairs} pairs of {args.steps} timed steps, "
          f"callbacks={args.callbacks}, progress bar {'on' if args.progress_bar else 'off'}")
    print(f"  A {' '.join(args.a) or '(defaults)'}: {statistics.median(a):.3f} ms per step (quartiles {quartiles(a)})")
    print(f"  B {' '.join(args.b) or '(defaults)'}: {statistics.median(b):.3f} ms per step (quartiles {quartiles(b)})")
    print(f"  B / A speed, median of the pairs: {statistics.median(ratios):.3f} (quartiles {quartiles(ratios)}); "
          f"B - A: {statistics.median(y - x for x, y in zip(a, b)):+.3f} ms per step")


if __name__ == "__main__":
    main()

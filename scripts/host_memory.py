"""Training with and without ``keep_host_memory`` (malloc keeps freed host memory), on the CPU.

    python scripts/host_memory.py                       # the cases below, 3 repetitions each
    python scripts/host_memory.py --cases dcgan:512 text_lm:64 --reps 5
    python scripts/host_memory.py --eval <checkpoint> [...]   # eval.py on checkpoints instead

Each run is ``train.py``'s code path in a process of its own (``scripts/benchmark.py``'s
``genlab_run``: the CSV logger, no validation; the bundled MNIST images, or the bundled
Shakespeare for the ``text_*`` models), because the setting holds for the rest of a process. The
two sides alternate (off, on, on, off, ...: ``benchmark.interleaved``). Over the timed batches,
per training step: the throughput, the minor page faults (pages the kernel maps in and zeroes for
the process), the kernel (system) CPU time and the user CPU time; and the process's peak resident
memory. With ``--eval``: the whole command ``python eval.py ckpt_path=<checkpoint>
metrics.sample_quality=false logger=csv`` with either setting, its wall time, page faults, kernel
and user CPU time and peak memory (the sample-quality metrics generate and score samples, work
the setting does not touch, and are left out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ["vae:128", "vae_conv:512", "dcgan:512", "text_lm:64", "text_vae:64"]
SIDES = {"off": "keep_host_memory=false", "on": "keep_host_memory=true"}


def child(model: str, batch_size: int, side: str, warmup: int, steps: int) -> dict:
    """One run in this process; what it measured."""
    import benchmark  # scripts/benchmark.py

    usage: dict[str, resource.struct_rusage] = {}
    clock = benchmark.drained_clock

    def opens(device: str) -> float:
        usage["start"] = resource.getrusage(resource.RUSAGE_SELF)
        return clock(device)

    def closes(device: str) -> float:
        end = clock(device)
        usage["end"] = resource.getrusage(resource.RUSAGE_SELF)
        return end

    benchmark.window_opens, benchmark.window_closes = opens, closes
    data = ("data=text",) if model.startswith("text") else ("data.source=bundled",)
    rate = benchmark.genlab_run(model, batch_size, warmup, steps, "cpu", [SIDES[side]], data=data)
    start, end = usage["start"], usage["end"]
    return {"items_per_s": rate, "minflt_per_step": (end.ru_minflt - start.ru_minflt) / steps,
            "sys_ms_per_step": 1e3 * (end.ru_stime - start.ru_stime) / steps,
            "user_ms_per_step": 1e3 * (end.ru_utime - start.ru_utime) / steps,
            "peak_rss_mb": end.ru_maxrss / 1024}


def eval_run(checkpoint: str, side: str) -> dict:
    """``eval.py`` on ``checkpoint`` in a process of its own; what it cost (``os.wait4``: that
    process's own resource usage)."""
    import benchmark  # scripts/benchmark.py

    env = {**os.environ, "WANDB_MODE": "disabled"}
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "eval.py", f"ckpt_path={checkpoint}", "metrics.sample_quality=false",
                                 "logger=csv", SIDES[side], f"hydra.run.dir={out}"], cwd=benchmark.ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            sys.exit(f"eval.py on {checkpoint} failed:\n{err.read()[-3000:]}")
    return {"seconds": seconds, "minflt": usage.ru_minflt, "sys_s": usage.ru_stime, "user_s": usage.ru_utime,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def evaluation(checkpoints: list[str], reps: int, json_path: Path | None) -> None:
    import benchmark  # scripts/benchmark.py

    results = []
    print("| checkpoint | side | seconds (median, range) | page faults | kernel s | user s | peak RSS, MB |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for checkpoint in checkpoints:
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for side in benchmark.interleaved(SIDES, reps):
            runs[side].append(eval_run(checkpoint, side))
        for side, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            seconds = [r["seconds"] for r in rs]
            results.append({"checkpoint": checkpoint, "side": side, "runs": rs, "median": med})
            print(f"| {checkpoint} | {SIDES[side]} | {med['seconds']:.1f} ({min(seconds):.1f}-{max(seconds):.1f}) | "
                  f"{med['minflt']:.0f} | {med['sys_s']:.1f} | {med['user_s']:.1f} | {med['peak_rss_mb']:.0f} |",
                  flush=True)
    if json_path:
        json_path.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=CASES, help="model:batch_size")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="timed batches per run (default: by model)")
    parser.add_argument("--eval", nargs="+", metavar="CHECKPOINT", help="time eval.py on these checkpoints instead")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "BATCH", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, batch, side = args.child
        print(json.dumps(child(model, int(batch), side, args.warmup, args.steps)))
        return

    import benchmark  # scripts/benchmark.py

    if args.eval:
        evaluation(args.eval, args.reps, args.json)
        return
    env = {**os.environ, "WANDB_MODE": "disabled"}
    results = []
    print("| model | batch | side | per second (median, range) | page faults / step | kernel ms / step | user ms / "
          "step | peak RSS, MB |\n|---|---|---|---|---|---|---|---|", flush=True)
    for case in args.cases:
        model, batch = case.split(":")
        steps = args.steps or {"vae": 200, "text_lm": 30, "text_vae": 30}.get(model, 10)
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for side in benchmark.interleaved(SIDES, args.reps):
            cmd = [sys.executable, __file__, "--child", model, batch, side, "--warmup", str(args.warmup),
                   "--steps", str(steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).parent)
            if out.returncode:
                sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for side, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            rates = [r["items_per_s"] for r in rs]
            results.append({"model": model, "batch_size": int(batch), "side": side, "steps": steps, "runs": rs,
                            "median": med})
            print(f"| {model} | {batch} | {SIDES[side]} | {med['items_per_s']:.0f} ({min(rates):.0f}-{max(rates):.0f}) | "
                  f"{med['minflt_per_step']:.0f} | {med['sys_ms_per_step']:.1f} | {med['user_ms_per_step']:.1f} | "
                  f"{med['peak_rss_mb']:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

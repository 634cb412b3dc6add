"""What one training step dispatches: genlab's step against the tuned raw loop's, op by op.

    python scripts/step_ops.py                                  # CPU: MLP VAE and DCGAN, batch 128
    python scripts/step_ops.py --device cuda --batch-sizes 128 512 --json ops.json
    python scripts/step_ops.py --tiny --models vae gan --batch-sizes 16   # the host-cost section's nets

Runs ``scripts/benchmark.py``'s sides (the tuned raw loop, genlab's ``train.py`` code path, and
genlab on Lightning's own loop, ``direct_step=false``) under ``torch.profiler`` over the same
window the benchmark times (after its warm-up batches), and reports per training batch:

- the operators dispatched (``aten::`` calls, nested ones included): on a GPU most of them launch
  a kernel, and each costs the host microseconds whatever the batch size;
- on a GPU, the kernels launched and the time they ran: kernel time well under the batch's wall
  time means the GPU waits for the host;
- the operators whose calls or own host time differ between genlab and the raw loop, by name: the
  work the framework (or the model's own code) adds to a step; on a GPU also the kernels.

``--also genlab_host_data`` adds genlab with ``data.on_device=false`` (batches cut on the host and
copied to the GPU).

The profiler slows every side, so its wall times are for comparing sides, not throughput
(``scripts/benchmark.py`` measures that).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import warnings

import torch
from torch.profiler import ProfilerActivity, profile

import benchmark  # scripts/benchmark.py

SIDES = ("raw_tuned", "genlab", "lightning_loop")
VARIANTS = {"lightning_loop": ["direct_step=false"], "genlab_host_data": ["data.on_device=false"]}
PROFILE: dict = {}
ANNOTATIONS = ("Optimizer.", "enumerate(DataLoader)", "ProfilerStep")


def profiled(device: str):
    """Swap the benchmark's window for one that profiles it as well."""
    opens, closes = benchmark.window_opens, benchmark.window_closes

    def window_opens(dev: str) -> float:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        PROFILE["prof"] = profile(activities=activities)
        start = opens(dev)
        PROFILE["prof"].__enter__()
        return start

    def window_closes(dev: str) -> float:
        end = closes(dev)
        PROFILE["prof"].__exit__(None, None, None)
        return end

    benchmark.window_opens, benchmark.window_closes = window_opens, window_closes


def count(prof, steps: int) -> dict:
    """Per batch: aten ops by name (calls, and their own host time in us), CUDA runtime calls by
    name (kernel launches, copies, waits), kernels run on the device and their time (us)."""
    ops: collections.Counter = collections.Counter()
    op_us: collections.Counter = collections.Counter()
    runtime: collections.Counter = collections.Counter()
    for avg in prof.key_averages():
        if avg.key.startswith("aten::"):
            ops[avg.key] += avg.count
            op_us[avg.key] += avg.self_cpu_time_total
        elif avg.key.startswith("cuda") and avg.device_type == torch.autograd.DeviceType.CPU:
            runtime[avg.key] += avg.count
    # on the device's timeline the profiler also draws record_function ranges (the optimizer's
    # step, the DataLoader's next batch) as spans from their first kernel to their last: left out
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and not getattr(e, "is_user_annotation", False) and not e.name.startswith(ANNOTATIONS)]
    kernel_calls: collections.Counter = collections.Counter(e.name for e in kernels)
    kernel_time: collections.Counter = collections.Counter()
    for e in kernels:
        kernel_time[e.name] += e.device_time
    per = lambda counter: {k: v / steps for k, v in counter.items()}  # noqa: E731
    return {"ops": per(ops), "op_us": per(op_us), "runtime": per(runtime), "ops_total": sum(ops.values()) / steps,
            "op_us_total": sum(op_us.values()) / steps, "kernels": len(kernels) / steps,
            "kernel_us": sum(e.device_time for e in kernels) / steps, "kernel_calls": per(kernel_calls),
            "kernel_time": per(kernel_time), "longest_kernel_us": max((e.device_time for e in kernels), default=0.0)}


def run_side(side: str, model: str, batch_size: int, warmup: int, steps: int, device: str,
             nets: list[str] = ()) -> dict:
    if side == "raw_tuned":
        ips = benchmark.raw_loop(model, batch_size, warmup, steps, device, tuned=True, overrides=list(nets))
    else:
        ips = benchmark.genlab_run(model, batch_size, warmup, steps, device, [*nets, *VARIANTS.get(side, [])])
    facts = count(PROFILE["prof"], steps)
    facts["wall_us"] = 1e6 * batch_size / ips  # an epoch's short last batch aside
    return facts


def report(rows: list[dict], top: int) -> str:
    lines = []
    for row in rows:
        sides = row["sides"]
        nets = ", nets 16 units wide" if row.get("nets") else ""
        lines += [f"## {row['model']}{nets}, batch {row['batch_size']} ({row['steps']} profiled batches, {row['device']})", "",
                  "| side | wall per batch, us (profiled) | aten ops | their own host time, us | kernels | "
                  "kernel time, us | CUDA runtime calls |", "|---|---|---|---|---|---|---|"]
        for side, s in sides.items():
            calls = ", ".join(f"{k} {v:.1f}" for k, v in sorted(s["runtime"].items(), key=lambda kv: -kv[1])) or "—"
            lines.append(f"| {side} | {s['wall_us']:.0f} | {s['ops_total']:.1f} | {s['op_us_total']:.0f} | "
                         f"{s['kernels']:.1f} | {s['kernel_us']:.0f} | {calls} |")
        raw, ours = sides["raw_tuned"], sides["genlab"]
        names = set(raw["ops"]) | set(ours["ops"])
        diff = {k: (ours["ops"].get(k, 0) - raw["ops"].get(k, 0), ours["op_us"].get(k, 0) - raw["op_us"].get(k, 0))
                for k in names}
        shown = sorted((k for k in names if abs(diff[k][0]) >= 0.05 or abs(diff[k][1]) >= 5),
                       key=lambda k: -abs(diff[k][1]))[:top]
        lines += ["", f"Ops whose calls or own host time per batch differ between genlab and the tuned raw loop "
                  f"(top {top} by host time):", "",
                  "| op | raw calls | genlab calls | raw us | genlab us | genlab − raw, us |", "|---|---|---|---|---|---|"]
        for k in shown:
            lines.append(f"| `{k}` | {raw['ops'].get(k, 0):.2f} | {ours['ops'].get(k, 0):.2f} | "
                         f"{raw['op_us'].get(k, 0):.1f} | {ours['op_us'].get(k, 0):.1f} | {diff[k][1]:+.1f} |")
        if ours["kernel_time"] or raw["kernel_time"]:
            names = set(raw["kernel_time"]) | set(ours["kernel_time"])
            gap = {k: ours["kernel_time"].get(k, 0) - raw["kernel_time"].get(k, 0) for k in names}
            lines += ["", f"Kernels whose device time per batch differs most (top {top}); the longest single kernel: "
                      f"raw {raw['longest_kernel_us']:.0f} us, genlab {ours['longest_kernel_us']:.0f} us", "",
                      "| kernel | raw calls | genlab calls | raw us | genlab us | genlab − raw, us |",
                      "|---|---|---|---|---|---|"]
            for k in sorted(names, key=lambda k: -abs(gap[k]))[:top]:
                lines.append(f"| `{k[:90]}` | {raw['kernel_calls'].get(k, 0):.2f} | {ours['kernel_calls'].get(k, 0):.2f} | "
                             f"{raw['kernel_time'].get(k, 0):.1f} | {ours['kernel_time'].get(k, 0):.1f} | {gap[k]:+.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", nargs="+", default=["vae", "dcgan"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--also", nargs="*", default=[], choices=["genlab_host_data"],
                        help="more sides: genlab_host_data, genlab with data.on_device=false")
    parser.add_argument("--tiny", action="store_true",
                        help="the host-cost section's nets, 16 units wide (models vae and gan), where "
                             "a step is almost all host work")
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    profiled(args.device)
    rows = []
    for model in args.models:
        for batch_size in args.batch_sizes:
            nets = benchmark.TINY_NETS[model] if args.tiny else []
            sides = {side: run_side(side, model, batch_size, args.warmup, args.steps, args.device, nets)
                     for side in (*SIDES, *args.also)}
            rows.append({"model": model, "batch_size": batch_size, "steps": args.steps, "device": args.device,
                         "nets": nets, "sides": sides})
            print(report(rows[-1:], args.top), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

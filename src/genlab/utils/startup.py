"""Where a run's start-up goes: wall-clock marks from the process start to the first training
batch (``python train.py`` writes them to ``run_info.json`` and the log, see docs/benchmarks.md)."""

from __future__ import annotations

import os
import time

_MARKS: list[tuple[str, float]] = []
_IMPORTED = time.time()
_DONE = False


def process_start() -> float:
    """Wall-clock time this process started (Linux: from /proc, 10 ms resolution); elsewhere the
    moment genlab's start-up clock was imported.

    /proc gives the start in clock ticks after boot. The wall-clock time of the boot is taken as
    now minus ``CLOCK_BOOTTIME`` (the clock those ticks count on), not as ``/proc/stat``'s
    ``btime``: that one is cut to whole seconds, which would put up to a second into the first
    phase of every start-up."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks after boot
        boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


def mark(phase: str) -> None:
    """End of start-up phase ``phase`` (what happened since the previous mark); ignored after
    ``finish`` (later jobs of a multirun in the same process have no start-up of their own)."""
    if not _DONE:
        _MARKS.append((phase, time.time()))


def finish(phase: str) -> dict[str, float] | None:
    """Mark the last phase and return ``phases()``, the first time only; ``None`` after."""
    global _DONE
    if _DONE:
        return None
    mark(phase)
    _DONE = True
    return phases()


def phases() -> dict[str, float]:
    """Seconds per phase, in order, from the process start to the latest mark; ``total`` last."""
    start = previous = process_start()
    out: dict[str, float] = {}
    for phase, at in _MARKS:
        out[phase] = out.get(phase, 0.0) + max(0.0, at - previous)
        previous = at
    out["total"] = previous - start if _MARKS else 0.0
    return out


def describe(seconds: dict[str, float]) -> str:
    rest = ", ".join(f"{k} {v:.2f}" for k, v in seconds.items() if k != "total")
    return f"{seconds.get('total', 0.0):.2f} s from process start to the first training batch ({rest})"

"""How often the processes of a DDP run agree on a SIGTERM.

Lightning (2.6) broadcasts a SIGTERM flag from rank 0 to every process before each training batch,
so that when a scheduler pre-empts the job all processes stop after the same batch and write their
checkpoint together (Lightning-AI/pytorch-lightning#20825). That is a collective per batch, and on
a GPU a wait for the device at every step; on a 2-core CPU it cost the MLP VAE under DDP 5-10% of
its throughput (``python scripts/benchmark.py --sections scaling``; Lightning-AI/pytorch-lightning#21487).

:class:`SigtermBroadcast` makes the same broadcast about every ``seconds``: rank 0 times the
batches between two broadcasts and sends, with the flag, after how many batches the next one
comes. Every process counts the same batches, so the processes still meet at the same collective.
A step that takes longer than ``seconds`` broadcasts at every batch, as Lightning does; batches
that turn much slower than the ones before wait out the interval already sent once.

Where every process gets the SIGTERM itself (Lightning passes it on to the processes it started;
SLURM's ``srun`` signals every task), nothing changes: Lightning stops each process after its
current batch on its own flag, and the processes meet in the checkpoint's barrier
(``tests/test_reliability.py``, in both cadences). Where only rank 0 gets it, Lightning's signal
handler also broadcasts the flag at once, at whatever point rank 0 is; how the other processes
meet that broadcast depends on where they are, in either cadence (not tested).
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.distributed as dist
from pytorch_lightning import Trainer
from pytorch_lightning.utilities.exceptions import SIGTERMException

MAX_INTERVAL = 1000  # batches between two broadcasts at most


class SigtermBroadcast:
    """Lightning's ``_TrainingEpochLoop._broadcast_sigterm_tensor``, made every ``interval``
    batches, with ``interval`` chosen by rank 0 so that the broadcasts come about ``seconds`` apart.

    The broadcast value packs both: ``received_sigterm + 2 * interval``, one int64 as Lightning's,
    so a broadcast of Lightning's own signal handler (the value 1) still reads as a SIGTERM."""

    def __init__(self, trainer: Trainer, seconds: float) -> None:
        self.trainer, self.seconds = trainer, seconds
        self.loop = trainer.fit_loop.epoch_loop
        self.next_batch = 0  # the count of batches done at which the next broadcast comes
        self.last: tuple[float, int] | None = None  # rank 0: the clock and batch count at the last one

    def batches_done(self) -> int:
        """Training batches started so far in this fit, resumed ones included: the same count in
        every process."""
        return self.loop.batch_progress.total.ready

    def interval(self, done: int) -> int:
        """Rank 0: batches until the next broadcast, from the time per batch since the last one."""
        now = time.perf_counter()
        last, self.last = self.last, (now, done)
        if last is None or done <= last[1]:
            return 1
        per_batch = (now - last[0]) / (done - last[1])
        return max(1, min(MAX_INTERVAL, int(self.seconds / per_batch) if per_batch > 0 else MAX_INTERVAL))

    def __call__(self) -> None:
        done = self.batches_done()
        if done < self.next_batch:
            return
        trainer = self.trainer
        value = 0
        if trainer.is_global_zero:
            value = int(bool(getattr(trainer, "received_sigterm", False))) + 2 * self.interval(done)
        try:
            flag = torch.tensor([value], device=trainer.strategy.root_device)
            dist.broadcast(flag, src=0)
            value = int(flag.item())
        except Exception:  # as Lightning: a failed broadcast is no SIGTERM, and the next batch tries again
            value = 0
        self.next_batch = done + max(1, value // 2)
        if value % 2:
            with contextlib.suppress(Exception):
                dist.barrier()  # as Lightning: every process here before any leaves
            raise SIGTERMException()


def broadcast_sigterm_every(trainer: Trainer, seconds: float) -> bool:
    """Give ``trainer``'s training loop :class:`SigtermBroadcast` when it runs in several processes
    and ``seconds`` > 0; False where nothing changed (one process, ``seconds`` <= 0, or a Lightning
    without the per-batch broadcast)."""
    loop = trainer.fit_loop.epoch_loop
    if seconds <= 0 or trainer.world_size <= 1 or not hasattr(loop, "_broadcast_sigterm_tensor"):
        return False
    loop._broadcast_sigterm_tensor = SigtermBroadcast(trainer, seconds)
    return True

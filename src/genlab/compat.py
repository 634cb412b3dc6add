"""The one place where genlab reaches into a dependency: Lightning's SIGTERM handling under DDP,
and the ``anonymous`` argument Lightning's W&B logger always passes (``drop_unset_anonymous``).

Applied only on the Lightning versions it was tested on (``TESTED_LIGHTNING``); on any other,
``agree_on_sigterm`` leaves Lightning's own behaviour. It works around Lightning's
pytorch-lightning#20806 (SIGTERM not raised consistently across DDP ranks), whose fix
(pytorch-lightning#20825, the broadcast before every batch described below) still hangs when the
signal lands during a forward or backward pass; the per-batch broadcast's own cost is
pytorch-lightning#21487.

A SIGTERM under DDP that stops every process after the same batch, wherever it lands, at the
cost of one broadcast about once a second.

Lightning (2.6) handles SIGTERM in two places. Its signal handler sets the process's flag, passes
the signal on to the processes it started and, under DDP, broadcasts a 1 from rank 0 at once;
before each training batch every process takes part in a broadcast of rank 0's flag
(``_TrainingEpochLoop._broadcast_sigterm_tensor``), and after each batch a process whose own flag
is set stops. The broadcast in the handler is a collective that runs wherever rank 0 happens to
be. When the signal lands while rank 0 is in a batch's forward or backward pass, the other
processes are already waiting in that batch's gradient all-reduce (their own handler, passed on
by rank 0, cannot run while they wait there): the handler's broadcast meets an all-reduce, and
the run hangs for good. ``KillAt(..., when="before_backward")`` in the tests hung 2 of 4 runs
that way. And a process's own flag, set by a signal passed on, can stop it one batch before or after
the others.

:func:`agree_on_sigterm` keeps Lightning's behaviour in one process and changes it under DDP: the
handler only notes the signal (and still passes it on); rank 0's note travels to every process in
the training loop's broadcast (:class:`SigtermBroadcast`), the only collective it takes part in;
when it is set, every process sets its flag, meets the others at a barrier and stops before that
batch, all after the same one. Signals that reach the other processes themselves (passed on by
Lightning, or sent to every process by SLURM's ``srun`` or ``torchrun``) are noted and wait for
rank 0's.

Lightning makes that broadcast before every batch: a collective per step that a hand-written DDP
loop does not make, and on a GPU a wait for the device (the flag is read on the host). Since the
handler makes no collective of its own, the broadcast can come less often without a race:
:class:`SigtermBroadcast` makes it about every ``seconds`` (``ddp_sigterm_seconds`` in
``train.py``; 0: before every batch). Rank 0 times the batches since the last broadcast and sends,
with its note, after how many batches the next one comes; every process counts the same batches,
so all meet at the same collective. A SIGTERM then stops the run at most about ``seconds`` of
training later, instead of after the current batch.
"""

from __future__ import annotations

import contextlib
import logging
import time
import types
from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning import Trainer
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_prefixed_message

log = logging.getLogger("pytorch_lightning.trainer.connectors.signal_connector")

MAX_INTERVAL = 1000  # batches between two broadcasts at most


def _distributed(trainer: Trainer) -> bool:
    return dist.is_available() and dist.is_initialized() and trainer.world_size > 1


def _note_sigterm(connector: Any, signum: int, frame: Any) -> None:
    """The connector's ``_sigterm_notifier_fn``: under DDP only a note, no collective."""
    trainer = connector.trainer
    if not _distributed(trainer):
        type(connector)._sigterm_notifier_fn(connector, signum, frame)  # Lightning's own
        return
    log.warning(rank_prefixed_message(f"Received SIGTERM: {signum}", trainer.local_rank))
    if not connector.genlab_sigterm_noted and not connector.received_sigterm:
        launcher = trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)
    connector.genlab_sigterm_noted = True


class SigtermBroadcast:
    """The epoch loop's ``_broadcast_sigterm_tensor``: rank 0's note (or flag) to every process,
    every ``interval`` batches, with ``interval`` chosen by rank 0 so that the broadcasts come
    about ``seconds`` apart (``seconds`` <= 0: before every batch).

    One int64 carries both, ``noted + 2 * interval``. The batches are counted by the loop's
    ``batch_progress.total.ready`` (batches started in this fit, resumed ones included), the same in
    every process."""

    def __init__(self, trainer: Trainer, seconds: float) -> None:
        self.trainer, self.seconds = trainer, seconds
        self.loop = trainer.fit_loop.epoch_loop
        self.next_batch = 0  # the count of batches started at which the next broadcast comes
        self.last: tuple[float, int] | None = None  # rank 0: the clock and batch count at the last one

    def batches_done(self) -> int:
        return self.loop.batch_progress.total.ready

    def interval(self, done: int) -> int:
        """Rank 0: batches until the next broadcast, from the time per batch since the last one
        (validation in between counts as training time: the next interval comes out shorter)."""
        now = time.perf_counter()
        last, self.last = self.last, (now, done)
        if self.seconds <= 0 or last is None or done <= last[1]:
            return 1
        per_batch = (now - last[0]) / (done - last[1])
        return max(1, min(MAX_INTERVAL, int(self.seconds / per_batch) if per_batch > 0 else MAX_INTERVAL))

    def __call__(self) -> None:
        done = self.batches_done()
        if done < self.next_batch:
            return
        trainer = self.trainer
        connector = trainer._signal_connector
        value = 0
        if trainer.global_rank == 0:
            noted = connector.genlab_sigterm_noted or connector.received_sigterm
            value = int(bool(noted)) + 2 * self.interval(done)
        message = torch.tensor([value], dtype=torch.int64, device=trainer.strategy.root_device)
        dist.broadcast(message, src=0)
        value = int(message.item())
        self.next_batch = done + max(1, value // 2)
        if value % 2:
            connector.received_sigterm = True
            with contextlib.suppress(Exception):
                dist.barrier()  # as Lightning: every process here before any leaves
            raise SIGTERMException()


TESTED_LIGHTNING = ("2.6.",)  # the versions whose internals this module was written and tested against


def applies(version: str | None = None) -> bool:
    """Whether the workaround is for this Lightning version."""
    import pytorch_lightning

    return (version or pytorch_lightning.__version__).startswith(TESTED_LIGHTNING)


def agree_on_sigterm(trainer: Trainer, seconds: float = 1.0) -> bool:
    """Install the handler and the broadcast above on ``trainer`` (before ``fit``: Lightning
    registers its handlers when the run starts, from the connector's attribute); under DDP the
    processes agree on a SIGTERM about every ``seconds`` of training (0: before every batch).
    Nothing on a Lightning version not in ``TESTED_LIGHTNING``; returns whether it was installed."""
    if not applies():
        log.debug("Lightning %s is not among %s: its own SIGTERM handling", pl_version(), TESTED_LIGHTNING)
        return False
    connector = trainer._signal_connector
    connector.genlab_sigterm_noted = False
    connector._sigterm_notifier_fn = types.MethodType(_note_sigterm, connector)
    trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = SigtermBroadcast(trainer, seconds)
    return True


def pl_version() -> str:
    import pytorch_lightning

    return pytorch_lightning.__version__


def drop_unset_anonymous(logger: Any) -> Any:
    """Leave ``anonymous`` out of the W&B logger's ``wandb.init`` arguments where it is unset.

    Lightning's ``WandbLogger`` always passes ``anonymous`` (``None`` unless asked), and W&B
    releases that deprecate the setting (0.31 among them) warn on every run that it "has no
    effect and will be removed" for any value but an absent one: a warning about nothing the
    user wrote. An ``anonymous`` the user does set is passed on as before. Only on the Lightning
    versions in ``TESTED_LIGHTNING`` (it edits the logger's ``_wandb_init``)."""
    init = getattr(logger, "_wandb_init", None)
    if applies() and isinstance(init, dict) and init.get("anonymous", True) is None:
        del init["anonymous"]
    return logger

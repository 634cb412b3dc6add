"""A SIGTERM under DDP that stops every process after the same batch, wherever it lands.

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
Lightning's broadcast before the next training batch, the only collective it takes part in; when
it is set, every process sets its flag, meets the others at a barrier and stops before that
batch, all after the same one. Signals that reach the other processes themselves (passed on by
Lightning, or sent to every process by SLURM's ``srun`` or ``torchrun``) are noted and wait for
rank 0's.
"""

from __future__ import annotations

import contextlib
import logging
import types
from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning import Trainer
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_prefixed_message

log = logging.getLogger("pytorch_lightning.trainer.connectors.signal_connector")


def _distributed(trainer: Trainer) -> bool:
    return dist.is_available() and dist.is_initialized() and trainer.world_size > 1


def _note_sigterm(connector: Any, signum: int, frame: Any) -> None:
    """The connector's ``_sigterm_notifier_fn``: under DDP only a note, no collective."""
    trainer = connector.trainer
    if not _distributed(trainer):
        type(connector)._sigterm_notifier_fn(connector, signum, frame)  # Lightning's own
        return
    log.info(rank_prefixed_message(f"Received SIGTERM: {signum}", trainer.local_rank))
    if not connector.genlab_sigterm_noted and not connector.received_sigterm:
        launcher = trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)
    connector.genlab_sigterm_noted = True


def _broadcast_sigterm(epoch_loop: Any) -> None:
    """The epoch loop's ``_broadcast_sigterm_tensor``: rank 0's note (or flag) to every process."""
    trainer = epoch_loop.trainer
    connector = trainer._signal_connector
    noted = connector.genlab_sigterm_noted or connector.received_sigterm
    flag = torch.tensor([1 if noted else 0], device=trainer.strategy.root_device)
    dist.broadcast(flag, src=0)
    if flag.item() == 1:
        connector.received_sigterm = True
        with contextlib.suppress(Exception):
            dist.barrier()
        raise SIGTERMException()


def agree_on_sigterm(trainer: Trainer) -> None:
    """Install the handler and the broadcast above on ``trainer`` (before ``fit``: Lightning
    registers its handlers when the run starts, from the connector's attribute)."""
    connector = trainer._signal_connector
    connector.genlab_sigterm_noted = False
    connector._sigterm_notifier_fn = types.MethodType(_note_sigterm, connector)
    epoch_loop = trainer.fit_loop.epoch_loop
    epoch_loop._broadcast_sigterm_tensor = types.MethodType(_broadcast_sigterm, epoch_loop)

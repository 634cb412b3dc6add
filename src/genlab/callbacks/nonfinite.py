"""What a NaN or infinite training loss does: stop the run with the step named, or skip that step."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning import Callback

from genlab.utils.errors import GenlabError

CHECKS_QUEUED = 64  # loss checks queued on a GPU before they are read


def nonfinite_error(value: torch.Tensor, epoch: int, step: int) -> GenlabError:
    return GenlabError(
        f"non-finite loss at epoch {epoch}, step {step}: loss={value.float().item()}. "
        "Lower model.optimizer.lr, clip gradients, or set nonfinite=skip to skip such steps."
    )


class NonFiniteLoss(Callback):
    """Checks every loss before its backward pass (automatic and manual optimization alike).

    ``policy="stop"`` raises a ``GenlabError`` naming the epoch and step, before bad weights reach
    a checkpoint. On a GPU (or with ``deferred=True``) the check does not read the loss at every
    step, which would make the host wait for the GPU: it is queued and read every
    ``CHECKS_QUEUED`` steps, at each training epoch's end, before validation and before a
    checkpoint is written; the error names the first bad step all the same.

    ``policy="skip"`` reads the loss at once; a bad one leaves that optimizer step without an
    update (its gradients are dropped, and under a 16-bit grad scaler the scaler skips the step on
    the NaN/inf gradients itself) and counts it in ``train/nonfinite_skipped``."""

    def __init__(self, policy: str = "stop", deferred: bool | None = None) -> None:
        if policy not in ("stop", "skip"):
            raise GenlabError(f"nonfinite={policy!r} is unknown; choose stop or skip.")
        self.policy, self.deferred = policy, deferred
        self.skipped = 0
        self.skip_next_step = False
        self.queue: list[tuple[torch.Tensor, int, int]] = []

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        value = loss.detach()
        deferred = value.is_cuda if self.deferred is None else self.deferred
        if self.policy == "stop" and deferred:
            self.queue.append((value, trainer.current_epoch, trainer.global_step))
            if len(self.queue) >= CHECKS_QUEUED:
                self.check_queued()
            return
        if bool(torch.isfinite(value).all()):
            return
        if self.policy == "stop":
            raise nonfinite_error(value, trainer.current_epoch, trainer.global_step)
        self.skip_next_step = True

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: torch.optim.Optimizer) -> None:
        if not self.skip_next_step:
            return
        self.skip_next_step = False
        self.skipped += 1
        if getattr(trainer.precision_plugin, "scaler", None) is None:
            optimizer.zero_grad(set_to_none=True)  # torch's optimizers leave a parameter without a gradient as it is
        pl_module.log("train/nonfinite_skipped", float(self.skipped), on_step=True, on_epoch=False)

    def check_queued(self) -> None:
        """Read the queued checks (one wait for the device) and raise for the first bad one."""
        checks, self.queue = self.queue, []
        if not checks:
            return
        finite = torch.isfinite(torch.stack([value.float().reshape(()) for value, _, _ in checks])).tolist()
        for ok, (value, epoch, step) in zip(finite, checks):
            if not ok:
                raise nonfinite_error(value, epoch, step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.check_queued()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self.check_queued()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.check_queued()

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self.check_queued()  # raises before the file is written

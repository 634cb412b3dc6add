"""A shorter road through Lightning's automatic optimization, taken where it changes nothing.

Lightning runs each automatic-optimization step through about a dozen layers: a closure object
wrapping three closures, the strategy, the precision plugin and the LightningOptimizer around
``optimizer.step``, and six hooks, each looked up on every callback and the module and timed by
the profiler: 0.2-0.3 ms of the MLP VAE's 4-5 ms step on a CPU (``scripts/ab_overrides.py --a
direct_step=false --b direct_step=true``). Where none of those layers has work (one device,
32-bit precision, no gradient accumulation, no callback or module overriding the hooks of the
step, no profiler recording), :class:`DirectOptimization` makes the same calls directly:
``training_step`` inside the optimizer's closure, ``zero_grad``, ``backward``, the module's
gradient clipping when ``trainer.gradient_clip_val`` asks for it, ``optimizer.step(closure)``,
with Lightning's progress counters (``global_step``, checkpoints and resuming read them) and step
outputs as before. Anything else goes through Lightning's own loop.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loops.optimization.automatic import Closure, ClosureResult, _AutomaticOptimization
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.model_helpers import is_overridden

# what Lightning calls between ``training_step`` and the end of the optimizer step
STEP_HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")
MODULE_HOOKS = (*STEP_HOOKS, "optimizer_zero_grad", "backward", "optimizer_step", "configure_gradient_clipping",
                "clip_gradients")


def why_not_direct(trainer: Trainer) -> str | None:
    """The reason the step must take Lightning's whole road, or None where the direct one is the same."""
    module = trainer.lightning_module
    strategy = trainer.strategy
    if module is None or not module.automatic_optimization:
        return "manual optimization"
    if type(strategy) is not SingleDeviceStrategy or strategy.model is not module:
        return f"strategy {type(strategy).__name__}"
    if type(trainer.precision_plugin) is not Precision:
        return f"precision plugin {type(trainer.precision_plugin).__name__}"
    if len(trainer.optimizers) != 1:
        return "several optimizers"
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return f"profiler {type(trainer.profiler).__name__}"
    for name in MODULE_HOOKS:
        if is_overridden(name, module, LightningModule):
            return f"{type(module).__name__}.{name}"
    for callback in trainer.callbacks:
        for name in STEP_HOOKS:
            if is_overridden(name, callback, Callback):
                return f"{type(callback).__name__}.{name}"
    return None


class DirectOptimization(_AutomaticOptimization):
    """Lightning's automatic optimization, with the direct road where :func:`why_not_direct` finds
    no reason against it (decided at the first step with each new optimizer, so once per fit;
    gradient accumulation, which a callback may switch on per epoch, is checked at every step)."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.direct, self._decided_for = False, None

    def run(self, optimizer: torch.optim.Optimizer, batch_idx: int, kwargs: OrderedDict) -> dict[str, Any]:
        trainer = self.trainer
        if optimizer is not self._decided_for:
            self.direct, self._decided_for = why_not_direct(trainer) is None, optimizer
        if not self.direct or trainer.accumulate_grad_batches != 1 or self._skip_backward:
            return super().run(optimizer, batch_idx, kwargs)

        module = trainer.lightning_module
        progress = self.optim_progress.optimizer
        result: ClosureResult | None = None

        @torch.enable_grad()
        def closure() -> torch.Tensor | None:
            nonlocal result
            previous, module._current_fx_name = module._current_fx_name, "training_step"
            output = module.training_step(*kwargs.values())
            module._current_fx_name = previous
            result = ClosureResult.from_training_step_output(output)
            if result.closure_loss is None:
                Closure.warning_cache.warn("`training_step` returned `None`. If this was on purpose, ignore this warning...")
            progress.zero_grad.increment_ready()
            progress.zero_grad.increment_started()
            optimizer.zero_grad()
            progress.zero_grad.increment_completed()
            if result.closure_loss is not None:
                result.closure_loss.backward()
            if trainer.gradient_clip_val:  # what Lightning's hook does after the closure, before the update
                module.configure_gradient_clipping(optimizer, trainer.gradient_clip_val, trainer.gradient_clip_algorithm)
            return result.loss

        progress.step.increment_ready()
        optimizer.step(closure=closure)
        progress.step.increment_completed()
        if result is None or result.loss is None:
            return {}
        return result.asdict()


def use_direct_optimization(trainer: Trainer) -> bool:
    """Give ``trainer``'s training loop :class:`DirectOptimization`; False where this Lightning's
    loop has no automatic-optimization loop to replace (it then runs as it is)."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if not isinstance(getattr(epoch_loop, "automatic_optimization", None), _AutomaticOptimization):
        return False
    epoch_loop.automatic_optimization = DirectOptimization(trainer)
    return True

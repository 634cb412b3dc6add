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
outputs as before (:class:`DirectResult`: the detached loss, not a copy of it divided by one).
Anything else goes through Lightning's own loop.

Around the step, Lightning's training-epoch loop looks up at every batch which object provides
each of the three batch-transfer hooks, walks the batch to move it to the device it is already
on, calls ``on_train_batch_start``/``on_train_batch_end`` on every callback (most of them empty)
inside a profiler context each, reads ``training_step``'s signature, and works out the step's
metrics from the logged values, logged or not at this step. :func:`direct_advance` does that
batch's work with these looked up once per epoch (:class:`BatchPlan`) and the metrics worked out
again only when a value was logged or reset (:class:`StepMetrics`), for automatic
and manual optimization (the GANs) alike, on one device in 32-bit precision without a recording
profiler; the first batch after a resume, a ``dataloader_iter`` step and anything else take
Lightning's ``advance``.

In manual optimization (the GANs: two optimizer steps per batch), each ``manual_backward`` and
each optimizer ``step`` go through the strategy, the precision plugin and Lightning's optimizer
wrapper, which call the three hooks around them on every callback, each in a profiler context:
about 0.12 ms per GAN batch with the default callbacks on a 2-core CPU (see docs/benchmarks.md).
:class:`DirectManualOptimization` calls only the hooks that a callback or the module overrides,
under the same conditions as the batch loop.
"""

from __future__ import annotations

import functools
import types
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer
from pytorch_lightning.loops.fetchers import _DataLoaderIterDataFetcher
from pytorch_lightning.loops.optimization.automatic import Closure, ClosureResult, _AutomaticOptimization
from pytorch_lightning.loops.optimization.manual import _ManualOptimization
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.model_helpers import is_overridden
from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature

# what Lightning calls between ``training_step`` and the end of the optimizer step
STEP_HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")
MODULE_HOOKS = (*STEP_HOOKS, "optimizer_zero_grad", "backward", "optimizer_step", "configure_gradient_clipping",
                "clip_gradients")


def why_not_direct_loop(trainer: Trainer) -> str | None:
    """The reason a batch must take Lightning's whole road around the step (fetch, transfer, hooks),
    or None where the direct one is the same."""
    module = trainer.lightning_module
    strategy = trainer.strategy
    if module is None:
        return "no module"
    if type(strategy) is not SingleDeviceStrategy or strategy.model is not module:
        return f"strategy {type(strategy).__name__}"
    if type(trainer.precision_plugin) is not Precision:
        return f"precision plugin {type(trainer.precision_plugin).__name__}"
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return f"profiler {type(trainer.profiler).__name__}"
    return None


def why_not_direct(trainer: Trainer) -> str | None:
    """The reason the step must take Lightning's whole road, or None where the direct one is the same."""
    module = trainer.lightning_module
    if module is None or not module.automatic_optimization:
        return "manual optimization"
    reason = why_not_direct_loop(trainer)  # one device, 32-true, no recording profiler
    if reason is not None:
        return reason
    if len(trainer.optimizers) != 1:
        return "several optimizers"
    for name in MODULE_HOOKS:
        if is_overridden(name, module, LightningModule):
            return f"{type(module).__name__}.{name}"
    for callback in trainer.callbacks:
        for name in STEP_HOOKS:
            if is_overridden(name, callback, Callback):
                return f"{type(callback).__name__}.{name}"
    return None


@dataclass
class DirectResult(ClosureResult):
    """Lightning's :class:`ClosureResult` for a ``training_step`` that returns the loss tensor, as
    the direct road takes it: Lightning divides the loss by the accumulated batches (1 here) and
    keeps a copy of it as the step's output, so that the precision plugin's scaling cannot change
    it (there is none here). Both cost an operator, and on a GPU a kernel, at every step; the
    output here is the detached loss itself."""

    def _clone_loss(self) -> None:
        if self.closure_loss is not None:
            self.loss = self.closure_loss.detach()

    @classmethod
    def from_output(cls, output: Any) -> ClosureResult:
        if isinstance(output, torch.Tensor):
            return cls(output)
        return ClosureResult.from_training_step_output(output)  # a dict, None or a mistake, as Lightning


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
            result = DirectResult.from_output(call_module_hook(module, "training_step", *kwargs.values()))
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


def why_not_direct_manual(trainer: Trainer) -> str | None:
    """The reason manual optimization's ``manual_backward`` and optimizer steps must take
    Lightning's road, or None where :class:`DirectManualOptimization`'s is the same."""
    reason = why_not_direct_loop(trainer)  # one device, 32-true, no recording profiler
    if reason is not None:
        return reason
    module = trainer.lightning_module
    if is_overridden("manual_backward", module, LightningModule):
        return f"{type(module).__name__}.manual_backward"
    return None


def epoch_loop_of(trainer: Trainer) -> Any:
    """``trainer``'s training-epoch loop (None in a Lightning without one where genlab looks)."""
    return getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)


def direct_manual(trainer: Trainer) -> bool:
    """Whether the last manual-optimization batch took :class:`DirectManualOptimization`'s road."""
    loop = getattr(epoch_loop_of(trainer), "manual_optimization", None)
    return isinstance(loop, DirectManualOptimization) and loop._hooks is not None


MANUAL_CALLBACK_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
MANUAL_MODULE_HOOKS = (*MANUAL_CALLBACK_HOOKS, "backward")


class DirectManualOptimization(_ManualOptimization):
    """Lightning's manual optimization (the GANs'), where :func:`why_not_direct_loop` finds no
    reason against it, with ``manual_backward`` and each optimizer's ``step`` taking the direct
    road during the training step: the hooks around them (``on_before_backward``,
    ``on_after_backward``, ``on_before_optimizer_step``) called only where a callback or the
    module overrides them, looked up once per fit, instead of through the strategy, the precision
    plugin and Lightning's optimizer wrapper, which call every callback's (mostly empty) hook in
    a profiler context each; the module's own ``backward`` where it overrides it, else
    ``loss.backward()``; Lightning's step counter (``global_step``) as before."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self._hooks: dict[str, tuple[list[Callback], bool]] | None = None
        self._decided_for: Any = None

    def run(self, kwargs: OrderedDict) -> dict[str, Any]:
        trainer = self.trainer
        module = trainer.lightning_module
        key = (module, tuple(trainer.callbacks))
        if key != self._decided_for:
            self._decided_for = key
            self._hooks = None if why_not_direct_manual(trainer) is not None else {
                name: overriding(name, trainer, module, callbacks=name in MANUAL_CALLBACK_HOOKS)
                for name in MANUAL_MODULE_HOOKS}
        if self._hooks is None:
            return super().run(kwargs)
        optimizers = trainer.strategy._lightning_optimizers
        module.manual_backward = self._backward  # an instance attribute for this batch only
        for lightning_optimizer in optimizers:
            lightning_optimizer.step = functools.partial(self._step, lightning_optimizer.optimizer)
        try:
            return super().run(kwargs)
        finally:
            del module.manual_backward
            for lightning_optimizer in optimizers:
                del lightning_optimizer.step

    def _call(self, name: str, *args: Any) -> None:
        call_overriding(self._hooks[name], self.trainer, self.trainer.lightning_module, name, *args)

    def _backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self._call("on_before_backward", loss)
        if self._hooks["backward"][1]:
            self.trainer.lightning_module.backward(loss, *args, **kwargs)
        else:
            loss.backward(*args, **kwargs)
        self._call("on_after_backward")

    def _step(self, optimizer: torch.optim.Optimizer, closure: Any = None, **kwargs: Any) -> Any:
        if closure is not None and not callable(closure):
            raise MisconfigurationException("When `optimizer.step(closure)` is called, the closure should be callable")

        def wrapped() -> Any:  # the closure first, then the hook, as Lightning's precision plugin does
            out = closure() if closure is not None else None
            self._call("on_before_optimizer_step", optimizer)
            return out

        self.optim_step_progress.increment_ready()
        out = optimizer.step(closure=wrapped, **kwargs)
        self.optim_step_progress.increment_completed()
        return out


class BatchPlan:
    """What a training batch needs besides the step, looked up once per epoch instead of at every
    batch: the batch-transfer hooks of the module or data module that override them (Lightning's
    defaults pass the batch through or move it to the device), the callbacks and module hooks
    overriding ``on_train_batch_start``/``on_train_batch_end`` (the others are empty), and whether
    ``training_step`` takes ``batch_idx``."""

    TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
    BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")

    def __init__(self, trainer: Trainer) -> None:
        module = trainer.lightning_module
        self.device = trainer.strategy.root_device
        selector = trainer._data_connector._datahook_selector
        self.transfer = {}
        for name in self.TRANSFER_HOOKS:
            owner = selector.get_instance(name) if selector is not None else module
            if is_overridden(name, owner, LightningDataModule if isinstance(owner, LightningDataModule)
                             else LightningModule):
                self.transfer[name] = owner
        self.batch_hooks = {name: overriding(name, trainer, module) for name in self.BATCH_HOOKS}
        self.takes_batch_idx = is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2)
        self.step_metrics = StepMetrics()

    def to_device(self, batch: Any, module: LightningModule) -> Any:
        """What ``on_before_batch_transfer``, the strategy's ``batch_to_device`` and
        ``on_after_batch_transfer`` do to the batch."""
        hooks = self.transfer
        if "on_before_batch_transfer" in hooks:
            batch = self._call(hooks["on_before_batch_transfer"], module, "on_before_batch_transfer", batch, 0)
        if "transfer_batch_to_device" in hooks:
            batch = self._call(hooks["transfer_batch_to_device"], module, "transfer_batch_to_device", batch,
                               self.device, 0)
        elif not (type(batch) in (tuple, list) and all(isinstance(t, torch.Tensor) and t.device == self.device
                                                        for t in batch)):
            batch = move_data_to_device(batch, self.device)
        if "on_after_batch_transfer" in hooks:
            batch = self._call(hooks["on_after_batch_transfer"], module, "on_after_batch_transfer", batch, 0)
        return batch

    @staticmethod
    def _call(owner: Any, module: LightningModule, name: str, *args: Any) -> Any:
        if owner is not module:
            return getattr(owner, name)(*args)
        return call_module_hook(module, name, *args)

    def call_batch_hook(self, name: str, trainer: Trainer, module: LightningModule, *args: Any) -> Any:
        return call_overriding(self.batch_hooks[name], trainer, module, name, *args)


class StepMetrics:
    """The logger connector's ``on_batch_end``: it copies the metrics of the step into the progress
    bar's, the callbacks' and the loggers' dicts after every batch, and works them out anew from
    the result collection each time (35-45 us a batch with the four values of the MLP models on a
    2-core CPU), though genlab logs them only on the steps that are written. In a training batch
    they are a function of the collection's items, whether each was reset, and each one's
    step value, which Lightning replaces by a new tensor of its own whenever the value is logged:
    this keeps the last metrics with those objects (held, so that their ids stay theirs) and
    works them out again only when one of them changed. It copies them into the three dicts after
    every batch, as Lightning does: a value validation wrote there under the same name is
    overwritten as before."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.held: tuple = ()
        self.metrics: Any = None

    def on_batch_end(self, connector: Any, results: Any) -> None:
        assert isinstance(connector._first_loop_iter, bool)
        items = tuple(results.values())
        held = (results, *items, *(item._forward_cache for item in items))
        key = (tuple(map(id, held)), tuple(item.has_reset for item in items), results.dataloader_idx, results.training)
        if key != self.key:
            self.key, self.held, self.metrics = key, held, connector.metrics
        metrics = self.metrics
        connector._progress_bar_metrics.update(metrics["pbar"])
        connector._callback_metrics.update(metrics["callback"])
        connector._logged_metrics.update(metrics["log"])
        results.batch = None  # as Lightning: drop the batch and its size
        results.batch_size = None


def overriding(name: str, trainer: Trainer, module: LightningModule, callbacks: bool = True) -> tuple[list[Callback], bool]:
    """Who overrides hook ``name``: the callbacks that do (none looked up with ``callbacks=False``,
    for a module-only hook), and whether the module does; what :func:`call_overriding` takes."""
    return ([c for c in trainer.callbacks if is_overridden(name, c, Callback)] if callbacks else [],
            is_overridden(name, module, LightningModule))


def call_overriding(hooks: tuple[list[Callback], bool], trainer: Trainer, module: LightningModule, name: str,
                    *args: Any) -> Any:
    """Hook ``name`` of the callbacks that override it (``hooks[0]``), then the module's where it
    does (``hooks[1]``), as Lightning calls them; the module's result."""
    callbacks, module_overrides = hooks
    if callbacks:
        call_callbacks(callbacks, trainer, module, name, *args)
    return call_module_hook(module, name, *args) if module_overrides else None


def call_module_hook(module: LightningModule, name: str, *args: Any) -> Any:
    previous, module._current_fx_name = module._current_fx_name, name  # what self.log checks
    try:
        return getattr(module, name)(*args)
    finally:
        module._current_fx_name = previous


def call_callbacks(callbacks: list[Callback], trainer: Trainer, module: LightningModule, name: str, *args: Any) -> None:
    previous, module._current_fx_name = module._current_fx_name, name
    try:
        for callback in callbacks:
            getattr(callback, name)(trainer, module, *args)
    finally:
        module._current_fx_name = previous


# what direct_advance uses of Lightning's training-epoch loop (a Lightning without one of them
# keeps its own ``advance``)
EPOCH_LOOP_PARTS = ("val_loop", "batch_idx", "batch_progress", "restarting", "automatic_optimization",
                    "manual_optimization", "update_lr_schedulers", "_num_ready_batches_reached", "_warning_cache")


def direct_advance(loop: Any, data_fetcher: Any) -> None:
    """Lightning's ``_TrainingEpochLoop.advance`` (one training batch) with its per-batch lookups
    done once per epoch (:class:`BatchPlan`); Lightning's own where :func:`why_not_direct_loop`
    finds a reason, for the first batch after a resume (Lightning's restart bookkeeping), and with
    a ``dataloader_iter`` step."""
    trainer = loop.trainer
    if loop.restarting or isinstance(data_fetcher, _DataLoaderIterDataFetcher):
        return type(loop).advance(loop, data_fetcher)
    module = trainer.lightning_module
    key = (trainer.current_epoch, module, trainer.datamodule, tuple(trainer.callbacks))
    known, plan = loop.__dict__.get("_genlab_plan", (None, None))
    if known != key:  # DDP and the rest: why_not_direct_loop gives a reason, Lightning's advance runs
        plan = BatchPlan(trainer) if why_not_direct_loop(trainer) is None else None
        loop._genlab_plan = (key, plan)
    if plan is None:
        return type(loop).advance(loop, data_fetcher)

    loop.val_loop.restarting = False
    batch, _, __ = next(data_fetcher)
    batch_idx = loop.batch_idx + 1
    progress = loop.batch_progress
    progress.is_last_batch = data_fetcher.done
    batch = plan.to_device(batch, module)
    progress.increment_ready()
    trainer._logger_connector.on_batch_start(batch)

    batch_output = None
    should_skip_rest_of_epoch = False
    if batch is None:
        loop._warning_cache.warn("train_dataloader yielded None. If this was on purpose, ignore this warning...")
    else:
        should_skip_rest_of_epoch = plan.call_batch_hook("on_train_batch_start", trainer, module, batch, batch_idx) == -1
        if should_skip_rest_of_epoch:
            progress.increment_by(0, is_last_batch=True)
        else:
            progress.increment_started()
            kwargs = OrderedDict(batch=batch)
            if plan.takes_batch_idx:
                kwargs["batch_idx"] = batch_idx
            if module.automatic_optimization:
                batch_output = loop.automatic_optimization.run(trainer.optimizers[0], batch_idx, kwargs)
            else:
                batch_output = loop.manual_optimization.run(kwargs)

    progress.increment_processed()
    loop.update_lr_schedulers("step", update_plateau_schedulers=False)
    if loop._num_ready_batches_reached():
        loop.update_lr_schedulers("epoch", update_plateau_schedulers=False)
    if should_skip_rest_of_epoch:
        raise StopIteration

    plan.call_batch_hook("on_train_batch_end", trainer, module, batch_output, batch, batch_idx)
    plan.step_metrics.on_batch_end(trainer._logger_connector, trainer._results)
    progress.increment_completed()
    trainer._logger_connector.update_train_step_metrics()


def batch_plan(trainer: Trainer) -> BatchPlan | None:
    """The :class:`BatchPlan` the training loop last took the direct road with (None: Lightning's)."""
    return getattr(epoch_loop_of(trainer), "__dict__", {}).get("_genlab_plan", (None, None))[1]


def use_direct_optimization(trainer: Trainer) -> bool:
    """Give ``trainer``'s training loop :class:`DirectOptimization` and :func:`direct_advance`;
    False where this Lightning's loop has no automatic-optimization loop to replace (it then runs
    as it is)."""
    epoch_loop = epoch_loop_of(trainer)
    if not isinstance(getattr(epoch_loop, "automatic_optimization", None), _AutomaticOptimization):
        return False
    epoch_loop.automatic_optimization = DirectOptimization(trainer)
    if isinstance(getattr(epoch_loop, "manual_optimization", None), _ManualOptimization):
        epoch_loop.manual_optimization = DirectManualOptimization(trainer)
    if all(hasattr(epoch_loop, name) for name in EPOCH_LOOP_PARTS):
        epoch_loop.advance = types.MethodType(direct_advance, epoch_loop)
    return True

"""genlab's direct road through Lightning's automatic and manual optimization and training-epoch
loop (``direct_step``): the same weights, optimizer state, step count and hook calls as
Lightning's own loop, taken only where none of the layers it skips has work to do."""

from __future__ import annotations

import csv

import pytest
import torch
from pytorch_lightning import Callback
from pytorch_lightning.loops.optimization.automatic import _AutomaticOptimization

from fault_injection import poison_vae_loss
from genlab.models import GAN, VAE
from genlab.train import train
from genlab.utils.direct_step import DirectOptimization, batch_plan, direct_manual, why_not_direct, why_not_direct_manual


class Record(Callback):
    """What the run's training loop did (``+callbacks.record._target_=test_direct_step.Record``)."""

    runs: list[dict] = []

    def on_train_end(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop.epoch_loop.automatic_optimization
        Record.runs.append({
            "loop": type(loop), "direct": getattr(loop, "direct", None), "reason": why_not_direct(trainer),
            "batch_plan": batch_plan(trainer) is not None, "manual_direct": direct_manual(trainer),
            "manual_reason": why_not_direct_manual(trainer),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "step": trainer.global_step, "skipped": pl_module.nonfinite_skipped, "weights": {k: v.clone() for k, v in pl_module.state_dict().items()},
            "adam": [s["exp_avg_sq"].clone() for s in trainer.optimizers[0].state.values()],
        })


class GradNorms(Callback):
    """Reads the gradients in ``on_before_optimizer_step``: a hook the direct road does not call."""

    norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        GradNorms.norms.append(float(torch.linalg.vector_norm(torch.cat([
            p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]))))


class HookedVAE(VAE):
    """A VAE whose ``on_after_backward`` counts its calls."""

    calls = 0

    def on_after_backward(self) -> None:
        HookedVAE.calls += 1


class BatchLog(Callback):
    """Records every training-batch hook call with its arguments, and logs from one."""

    calls: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        BatchLog.calls.append(("start", trainer.current_epoch, batch_idx, batch[0].dtype, float(batch[0].sum())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        BatchLog.calls.append(("end", trainer.current_epoch, batch_idx, float(outputs["loss"]), float(batch[0].sum())))
        pl_module.log("hook/batch_idx", float(batch_idx), on_step=True, on_epoch=True)


class ShortEpochVAE(VAE):
    """A VAE with batch hooks of its own: it flips the images before the transfer (so the
    weights show whether the hook ran) and ends each epoch at its third batch (``-1``)."""

    def on_before_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        return x.flip(-1), y

    def on_train_batch_start(self, batch, batch_idx):
        return -1 if batch_idx == 2 else None


class MetricsTrail(Callback):
    """The logger connector's metric dicts as every batch and epoch starts (read from its own
    dicts: ``trainer.callback_metrics`` would work them out anew), and a value logged from
    ``on_train_batch_end`` at the second of every three batches, per step and per epoch."""

    trail: list[tuple] = []

    def _record(self, trainer, at: str) -> None:
        connector = trainer._logger_connector
        MetricsTrail.trail.append((at, trainer.global_step, *(
            {k: float(v) for k, v in d.items()}
            for d in (connector._callback_metrics, connector._progress_bar_metrics, connector._logged_metrics))))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record(trainer, f"batch {batch_idx}")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._record(trainer, "epoch start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx % 3 == 1:
            pl_module.log("hook/third", float(batch_idx), on_step=True, on_epoch=True, prog_bar=True)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        pl_module.log("hook/third", 100.0 + batch_idx)  # the training value's name, from validation


class ManualHookLog(Callback):
    """Records the hooks around the GANs' backward passes and optimizer steps: which, in which
    order, with what (the loss, the gradient norm the step will apply), under which hook name."""

    calls: list[tuple] = []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        ManualHookLog.calls.append(("before_backward", pl_module._current_fx_name, float(loss), trainer.global_step))

    def on_after_backward(self, trainer, pl_module) -> None:
        ManualHookLog.calls.append(("after_backward", pl_module._current_fx_name, grad_norm(pl_module)))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        index = [o.optimizer for o in pl_module.optimizers()].index(optimizer)
        ManualHookLog.calls.append(("before_step", pl_module._current_fx_name, index, grad_norm(pl_module)))
        pl_module.log("hook/grad_norm", grad_norm(pl_module), on_step=True, on_epoch=True)


def grad_norm(module) -> float:
    return float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])))


class OwnBackwardGAN(GAN):
    """A GAN with its own ``backward`` (scales the loss) and ``on_after_backward``."""

    calls: list[str] = []

    def backward(self, loss, *args, **kwargs) -> None:
        OwnBackwardGAN.calls.append(f"backward in {self._current_fx_name}")
        (0.5 * loss).backward(*args, **kwargs)

    def on_after_backward(self) -> None:
        OwnBackwardGAN.calls.append(f"{self._current_fx_name}")


class OwnManualBackwardGAN(GAN):
    def manual_backward(self, loss, *args, **kwargs) -> None:
        super().manual_backward(loss, *args, **kwargs)


def run(train_config, *overrides: str) -> dict:
    Record.runs = []
    train(train_config("debug=fast", "data.source=bundled", "logger=csv", "test=false", "callbacks=none",
                       "trainer.deterministic=true", "+callbacks.record._target_=test_direct_step.Record", *overrides))
    return Record.runs[-1]


def assert_same_training(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] > 0 and a["skipped"] == b["skipped"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert len(a["adam"]) == len(b["adam"]) > 0 and all(torch.equal(x, y) for x, y in zip(a["adam"], b["adam"]))


@pytest.mark.parametrize("extra", [[], ["trainer.accumulate_grad_batches=2"], ["nonfinite=skip"],
                                   ["+trainer.gradient_clip_val=0.5"],
                                   ["+trainer.gradient_clip_val=0.01", "+trainer.gradient_clip_algorithm=value"]],
                         ids=["plain", "accumulated", "skipped-step", "clipped-norm", "clipped-value"])
def test_direct_road_trains_exactly_as_lightnings_loop(train_config, extra: list[str], monkeypatch) -> None:
    """Same seed, with and without ``direct_step``: bit-identical weights, Adam state and
    ``global_step`` (gradient accumulation goes Lightning's way at every step). ``skipped-step``:
    a NaN loss at step 2 makes ``training_step`` return None, and that step changes nothing."""
    if "nonfinite=skip" in extra:
        poison_vae_loss(monkeypatch, step=2)
    direct = run(train_config, *extra)
    lightning = run(train_config, "direct_step=false", *extra)
    assert direct["loop"] is DirectOptimization and direct["direct"] and direct["reason"] is None
    assert lightning["loop"] is _AutomaticOptimization
    assert direct["skipped"] == ("nonfinite=skip" in extra)
    assert_same_training(direct, lightning)


@pytest.mark.parametrize("extra", [["+callbacks.log._target_=test_direct_step.BatchLog"],
                                   ["model._target_=test_direct_step.ShortEpochVAE"],
                                   ["model=gan"]],
                         ids=["callback-hooks", "module-hooks", "gan"])
def test_direct_batch_loop_calls_the_hooks_as_lightnings_loop(train_config, extra: list[str]) -> None:
    """The training-epoch loop's direct road: the batch hooks of callbacks, the module and the data
    module run with the same arguments at the same batches, ``-1`` from ``on_train_batch_start``
    ends the epoch, ``self.log`` works from a callback's hook, and the GANs' manual optimization
    takes it too; weights and Adam state end bit-identical."""
    BatchLog.calls = []
    direct = run(train_config, *extra)
    direct_calls, BatchLog.calls = BatchLog.calls, []
    lightning = run(train_config, "direct_step=false", *extra)
    assert direct["batch_plan"] and not lightning["batch_plan"]
    assert direct["manual_direct"] == ("model=gan" in extra) and not lightning["manual_direct"]
    assert_same_training(direct, lightning)
    assert direct_calls == BatchLog.calls
    assert direct["metrics"] == lightning["metrics"]
    if "BatchLog" in extra[0]:
        assert len(direct_calls) == 2 * direct["step"]
        assert {c[3] for c in direct_calls if c[0] == "start"} == {torch.float32}  # after the data module's hook
        assert "hook/batch_idx_epoch" in direct["metrics"]
    if "ShortEpochVAE" in extra[0]:
        assert direct["step"] == 2  # debug=fast: one epoch of 5 batches, ended at the third


@pytest.mark.parametrize("validation", ["per epoch", "every 2 batches"])
@pytest.mark.parametrize("model", ["vae", "gan"])
def test_direct_batch_loop_keeps_the_step_metrics_of_lightnings_loop(train_config, model: str, validation: str,
                                                                      tmp_path) -> None:
    """The direct road works the step's metrics out again only when a value was logged or reset:
    the progress bar's, the callbacks' and the loggers' metrics are Lightning's before every batch
    of two epochs of five batches, with values logged at every fourth step and from a callback at
    the second of every three batches, and validation at each epoch's end or every two batches,
    which logs a value under the name of a training one; the first batch of the second epoch logs
    nothing (the epoch's values must stay). The CSV logs are the same."""
    trails, logs = [], []
    every = ["trainer.val_check_interval=2"] if validation == "every 2 batches" else []
    for road in ("direct_step=true", "direct_step=false"):
        MetricsTrail.trail = []
        run(train_config, f"model={model}", road, "trainer.max_epochs=2", "trainer.log_every_n_steps=4",
            "+callbacks.trail._target_=test_direct_step.MetricsTrail", *every)
        trails.append(MetricsTrail.trail)
        with open(tmp_path / "metrics.csv") as f:  # all but the times
            logs.append([{k: v for k, v in row.items() if v and not k.startswith("time/")} for row in csv.DictReader(f)])
        (tmp_path / "metrics.csv").unlink()
    assert trails[0] == trails[1] and len(trails[0]) == 12
    assert any("hook/third_step" in pbar for _, _, _, pbar, _ in trails[0])
    assert any("hook/third_epoch" in callback for _, _, callback, _, _ in trails[0])
    if every:  # within the epoch, validation's value shows until the next training batch ends
        assert any(callback.get("hook/third", 0) >= 100 for _, _, callback, _, _ in trails[0])
    assert any("train/loss" in logged or "train/d_loss" in logged for *_, logged in trails[0])
    assert logs[0] == logs[1] and any("hook/third_epoch" in row for row in logs[0])


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["trainer.precision=bf16-mixed"], "precision plugin MixedPrecision"),
        (["+trainer.profiler=simple"], "profiler SimpleProfiler"),
        (["+callbacks.norms._target_=test_direct_step.GradNorms"], "GradNorms.on_before_optimizer_step"),
        (["model._target_=test_direct_step.HookedVAE"], "HookedVAE.on_after_backward"),
        (["model=gan"], "manual optimization"),
    ],
    ids=["bf16", "profiler", "callback-hook", "module-hook", "gan"],
)
def test_lightnings_loop_wherever_a_skipped_layer_has_work(train_config, overrides: list[str], reason: str) -> None:
    GradNorms.norms, HookedVAE.calls = [], 0
    record = run(train_config, *overrides)
    assert record["reason"] == reason
    assert not record["direct"]
    # the batch loop's direct road needs neither the step's nor Lightning's layers around the step
    assert record["batch_plan"] == (reason.startswith(("precision", "profiler")) is False)
    if "GradNorms" in reason:
        assert len(GradNorms.norms) == record["step"] and all(n > 0 for n in GradNorms.norms)
    if "HookedVAE" in reason:
        assert HookedVAE.calls == record["step"]


@pytest.mark.parametrize("extra", [["+callbacks.hooks._target_=test_direct_step.ManualHookLog"],
                                   ["model._target_=test_direct_step.OwnBackwardGAN"]],
                         ids=["callback-hooks", "module-backward"])
def test_direct_manual_road_calls_the_hooks_as_lightnings(train_config, extra: list[str]) -> None:
    """The GANs' ``manual_backward`` and optimizer steps on the direct road: the hooks around them
    run with the same arguments, in the same order, under the same hook names, the module's own
    ``backward`` replaces ``loss.backward()``, ``self.log`` works from the hooks, and the weights,
    Adam state and ``global_step`` end bit-identical."""
    ManualHookLog.calls, OwnBackwardGAN.calls = [], []
    direct = run(train_config, "model=gan", *extra)
    calls, ManualHookLog.calls, OwnBackwardGAN.calls = (ManualHookLog.calls, OwnBackwardGAN.calls), [], []
    lightning = run(train_config, "model=gan", "direct_step=false", *extra)
    assert direct["manual_direct"] and direct["manual_reason"] is None and not lightning["manual_direct"]
    assert_same_training(direct, lightning)
    assert calls == (ManualHookLog.calls, OwnBackwardGAN.calls)
    assert direct["metrics"] == lightning["metrics"]
    if "ManualHookLog" in extra[0]:  # two optimizer steps per batch, each: before, after backward, before step
        assert len(calls[0]) == 3 * direct["step"] and "hook/grad_norm_epoch" in direct["metrics"]
        assert {c[1] for c in calls[0]} == {"on_before_backward", "on_after_backward", "on_before_optimizer_step"}
    else:
        assert calls[1][:2] == ["backward in training_step", "on_after_backward"] and len(calls[1]) == 2 * direct["step"]


def test_manual_optimization_takes_lightnings_road_for_a_module_with_its_own_manual_backward(train_config) -> None:
    record = run(train_config, "model=gan", "model._target_=test_direct_step.OwnManualBackwardGAN")
    assert record["manual_reason"] == "OwnManualBackwardGAN.manual_backward" and not record["manual_direct"]
    assert record["step"] > 0

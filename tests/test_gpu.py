"""On a CUDA device: genlab's modules through the Trainer's GPU, 16-bit and DDP paths.

Skipped where torch sees no GPU (and the DDP test where it sees fewer than two). On a GPU
machine: ``python -m pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from pytorch_lightning import Callback, Trainer

from genlab.models.gan_losses import LOSSES
from genlab.train import train
from genlab.utils.config import PROJECT_ROOT, compose_config
from test_gan import StepRecorder, step_effects, tiny_data  # tests/ is on sys.path (conftest)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ON_ONE_GPU = ("trainer.gpus=1", "data.source=bundled", "logger=csv")


class RunFacts(Callback):
    """What a run did, for the test that reads it (``+callbacks.facts._target_=test_gpu.RunFacts``)."""

    seen: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            RunFacts.seen = {"fused": [bool(o.defaults.get("fused")) for o in trainer.optimizers],
                             "batch": batch[0].device.type, "split": trainer.datamodule._splits["train"].device.type}


class NoHostWaits(Callback):
    """Torch's sync debug mode set to ``error`` from batch ``first`` to the end of batch ``last``,
    except in the steps whose values are logged (``trainer.log_every_n_steps``): any operation
    of the other steps that makes the host wait for the GPU raises. Each guarded step's tail in
    Lightning (after ``on_train_batch_end``, where it reads the progress bar's values) is guarded too."""

    def __init__(self, first: int = 2, last: int = 13) -> None:
        self.first, self.last, self.guarded = first, last, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first <= batch_idx <= self.last:
            logged = (batch_idx + 1) % trainer.log_every_n_steps == 0
            torch.cuda.set_sync_debug_mode("default" if logged else "error")
            self.guarded += not logged

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode("default")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model_name", ["gan", "dcgan"])
def test_gan_steps_under_16_mixed_change_only_their_net(train_config, tmp_path: Path, loss: str,
                                                        model_name: str) -> None:
    """Manual optimization with the AMP grad scaler: per batch, ``n_critic`` discriminator steps
    then one generator step, each changing its own net alone (the scaler may skip a step whose
    scaled gradients overflow, never step the other net)."""
    n_critic = 2 if loss == "wgan-gp" else 1
    cfg = train_config(f"model={model_name}", f"model.loss={loss}", f"model.n_critic={n_critic}",
                       "model.grad_clip=1.0", "model.ema_decay=0.9")
    model = instantiate(cfg.model)
    recorder = StepRecorder()
    batches = 4
    trainer = Trainer(accelerator="gpu", devices=1, precision="16-mixed", max_epochs=1,
                      limit_train_batches=batches, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder])
    trainer.fit(model, datamodule=tiny_data(tmp_path))
    assert trainer.precision_plugin.scaler is not None
    assert [name for name, _ in recorder.snapshots] == (["D"] * n_critic + ["G", "end"]) * batches
    stepped_any = {"D": False, "G": False}
    for step, own, other in step_effects(recorder.snapshots):
        stepped_any[step] |= own
        assert not other, f"{step} step changed the other net"
    assert stepped_any == {"D": True, "G": True}
    assert model.batches_seen == batches and trainer.strategy.root_device.type == "cuda"


@pytest.mark.parametrize(
    ("model_name", "precision", "extra"),
    [
        ("vae", "32-true", ()),
        ("vae_conv", "16-mixed", ()),
        ("vae_conv", "bf16-mixed", ()),
        ("dcgan", "16-mixed", ()),
        ("dcgan", "bf16-mixed", ()),
        ("gan", "16-mixed", ("model.loss=wgan-gp", "model.n_critic=2", "model.ema_decay=0.99")),
    ],
)
def test_train_on_one_gpu(train_config, tmp_path: Path, model_name: str, precision: str, extra: tuple) -> None:
    """``python train.py trainer.gpus=1 trainer.precision=...``'s code path: fit, validation
    metrics (FID on the GPU for GANs), the best checkpoint tested, sample grids; the checkpoint
    loads on a machine without a GPU and generates there."""
    cfg = train_config(f"model={model_name}", *ON_ONE_GPU, f"trainer.precision={precision}", "trainer.max_epochs=1",
                       "trainer.limit_train_batches=20", "trainer.limit_val_batches=4",
                       "+callbacks.facts._target_=test_gpu.RunFacts", *extra)
    metrics = train(cfg)
    # the images live on the GPU (data.on_device=auto); Adam runs fused, under the grad scaler too
    assert RunFacts.seen == {"fused": [True] * (1 if model_name.startswith("vae") else 2), "batch": "cuda",
                             "split": "cuda"}
    keys = ("test/elbo", "val/elbo") if model_name.startswith("vae") else ("test/d_fake", "val/fid")
    assert all(key in metrics and math.isfinite(metrics[key]) for key in keys), metrics
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith(("train/", "val/"))), metrics
    assert (tmp_path / "samples" / "samples_epoch000.png").stat().st_size > 1000

    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    model = instantiate(cfg.model)
    model.load_state_dict(state["state_dict"])
    images = model.eval().generate(torch.randn(8, model.latent_dim))
    assert images.device.type == "cpu" and images.shape == (8, 1, 28, 28) and torch.isfinite(images).all()


@pytest.mark.parametrize("preset", ["dcgan_mnist", "vae_mnist", "cvae_mnist"])
def test_gpu_presets_train_on_one_gpu(train_config, preset: str) -> None:
    """``experiment=gpu/<preset>``, the preset's whole recipe at its GPU budget (for ``dcgan_mnist``
    bf16 autocast, channels-last weights, R1, DiffAugment and the EMA generator), a few batches on
    the GPU with the images held there: finite losses, the best checkpoint tested."""
    cfg = train_config(f"experiment=gpu/{preset}", "data.source=bundled", "logger=csv", "trainer.max_epochs=1",
                       "trainer.limit_train_batches=20", "trainer.limit_val_batches=2",
                       "trainer.check_val_every_n_epoch=1", "+callbacks.facts._target_=test_gpu.RunFacts")
    metrics = train(cfg)
    assert RunFacts.seen["batch"] == "cuda"
    assert any(key.startswith("test/") for key in metrics), metrics
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith(("train/", "test/"))), metrics


def test_16_bit_vae_learns_as_32_bit(tmp_path: Path) -> None:
    """The same seed and batches in each precision: after two epochs, the validation ELBO of
    the 16-bit runs is within 2% of the fp32 run's."""
    elbo = {}
    for precision in ("32-true", "16-mixed", "bf16-mixed"):
        cfg = compose_config("train", [*ON_ONE_GPU, f"trainer.precision={precision}", "trainer.max_epochs=2",
                                       "test=false", "callbacks=none"], tmp_path / precision)
        elbo[precision] = train(cfg)["val/elbo"]
    for precision in ("16-mixed", "bf16-mixed"):
        assert elbo[precision] == pytest.approx(elbo["32-true"], rel=0.02), elbo


@pytest.mark.parametrize("precision", ["32-true", "16-mixed"])
@pytest.mark.parametrize(
    ("model_name", "extra"),
    [("vae", ()), ("vae_conv", ()), ("dcgan", ()), ("gan", ("model.ema_decay=0.99",))],
    ids=["vae", "vae_conv", "dcgan", "gan-ema"],
)
def test_training_steps_never_wait_for_the_gpu(train_config, model_name: str, extra: tuple, precision: str) -> None:
    """Between logged steps a training step queues its work and moves on: no read of the loss
    (genlab's NaN check is queued on a GPU), no copy of the batch from host memory (the images
    are on the GPU), no read of the grad scaler's inf check (fused Adam takes it as a tensor),
    no read of the EMA's update count, no read of the progress bar's values after a logged step
    (they are logged as host values)."""
    cfg = train_config(f"model={model_name}", "data.source=bundled", *extra)
    guard = NoHostWaits()
    trainer = Trainer(accelerator="gpu", devices=1, precision=precision, max_epochs=1, limit_train_batches=16,
                      limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, log_every_n_steps=5, callbacks=[guard])
    trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
    assert guard.guarded == 10  # batches 2-13 but 4 and 9, whose values are logged


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("model_name", ["vae", "dcgan"])
def test_two_gpus_ddp_writes_one_run(tmp_path: Path, model_name: str) -> None:
    """``python train.py trainer.gpus=2``: DDP over two GPUs, one run folder, one checkpoint."""
    env = {**os.environ, "GENLAB_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "train.py"), f"model={model_name}", "trainer.gpus=2",
                           "trainer.precision=16-mixed", "debug=fast", "trainer.accelerator=gpu", "data.source=bundled",
                           "logger=csv"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr
    runs = list((tmp_path / "outputs" / "debug" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.ckpt").is_file()


def test_text_decoder_nll_on_a_gpu_matches_the_cpus() -> None:
    """In training on a GPU the decoder's likelihood runs over every position (no wait for the
    token count), in evaluation there and on the CPU over the tokens alone: the same values."""
    from genlab.nets.text import RNNDecoder

    torch.manual_seed(0)
    x = torch.tensor([[5, 6, 7, 8, 2], [9, 2, 0, 0, 0], [4, 4, 2, 0, 0]])
    z = torch.randn(3, 4)
    dec = RNNDecoder(vocab_size=12, latent_dim=4, embed_dim=8, hidden_dim=16, z_every_step=True)
    on_cpu = dec.nll(x, z)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # cuDNN's RNN in full float32
        dec, x, z = dec.cuda(), x.cuda(), z.cuda()
        in_training = dec.nll(x, z)
        with torch.no_grad():
            in_evaluation = dec.nll(x, z)
    assert in_training.requires_grad
    assert torch.allclose(on_cpu, in_training.detach().cpu(), atol=1e-3)
    assert torch.allclose(on_cpu, in_evaluation.cpu(), atol=1e-3)

"""The GAN objective: which step changes which net, short real runs, resume, and learning."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.loggers import CSVLogger

from genlab.data import MNISTDataModule
from genlab.models.gan_losses import LOSSES
from genlab.train import train
from conftest import with_identity_blocks


class StepRecorder(Callback):
    """Snapshots the parameters before every optimizer step and at the end of the batch, so a
    test can see which net each step changed."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[str, dict[str, torch.Tensor]]] = []

    def _snap(self, module) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in module.named_parameters() if not n.startswith("ema.")}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        name = "G" if optimizer is trainer.optimizers[0] else "D"  # configure_optimizers: [G, D]
        self.snapshots.append((name, self._snap(pl_module)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.snapshots.append(("end", self._snap(pl_module)))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> list[bool]:
    return [not torch.equal(before[n], after[n]) for n in before if n.startswith(prefix)]


def step_effects(snapshots: list[tuple[str, dict[str, torch.Tensor]]]):
    """For each recorded optimizer step: its name ("D" or "G"), whether it changed its own net,
    whether it changed the other net."""
    for (step, before), (_, after) in zip(snapshots, snapshots[1:]):
        if step == "end":
            continue
        own, other = ("discriminator.", "generator.") if step == "D" else ("generator.", "discriminator.")
        yield step, any(changed(before, after, own)), any(changed(before, after, other))


class Float64Images(MNISTDataModule):
    """The images handed to the module in float64, for the runs under ``float64``."""

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = super().on_after_batch_transfer(batch, dataloader_idx)
        return x.double(), y


def tiny_data(tmp_path: Path, batch_size: int = 16,
              module: type[MNISTDataModule] = MNISTDataModule) -> MNISTDataModule:
    return module(root=str(tmp_path), source="bundled", batch_size=batch_size)


@pytest.fixture
def float64():
    """torch's default dtype float64 for the test: nets built and noise drawn in float64. For the
    tests that compare two runs of the GAN game: in float32 BatchNorm can grow the rounding of two
    equivalent computations to a sizeable part of an update within a few steps, for some initial
    weights; in float64 the same growth stays far below any tolerance that still tells one game
    from another. torch's generator is seeded too, so the weights a test draws do not depend on
    the tests run before it in its process; its state is put back after the test, as the dtype."""
    before, rng = torch.get_default_dtype(), torch.get_rng_state()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(before)
    torch.set_rng_state(rng)


# plain SGD for both nets, for the tests that compare two runs' updates: Adam divides each gradient
# by its own size and grows the rounding of equivalent kernels to whole steps in a GAN with BatchNorm
SGD_LR = 0.05
PLAIN_SGD = ("~model.optimizer.betas", "model.optimizer._target_=torch.optim.SGD", f"model.optimizer.lr={SGD_LR}")


def assert_same_update(mine: dict, reference: dict, start: dict, tolerance: float) -> None:
    """Each floating-point tensor of state dict ``mine`` is within ``tolerance`` times the size of
    the update that took ``start`` to ``reference`` (norms; 1e-7 more for tensors that did not
    move); the other tensors equal. The three dicts list the same tensors in the same order."""
    for (name, p), q, q0 in zip(mine.items(), reference.values(), start.values(), strict=True):
        if p.is_floating_point():
            assert (p - q).norm() <= tolerance * (q - q0).norm() + 1e-7, name
        else:
            assert torch.equal(p, q), name


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model_name", ["gan", "dcgan"])
def test_each_step_changes_only_its_net(train_config, tmp_path: Path, loss: str, model_name: str) -> None:
    n_critic = 2 if loss == "wgan-gp" else 1
    cfg = train_config(f"model={model_name}", f"model.loss={loss}", f"model.n_critic={n_critic}",
                       "model.grad_clip=1.0", "model.ema_decay=0.9")
    model = instantiate(cfg.model)
    recorder = StepRecorder()
    trainer = Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[recorder])
    trainer.fit(model, datamodule=tiny_data(tmp_path))
    order = [name for name, _ in recorder.snapshots]
    assert order == ["D"] * n_critic + ["G", "end"]
    for step, own, other in step_effects(recorder.snapshots):
        assert own, f"{step} step changed nothing in its own net"
        assert not other, f"{step} step changed the other net"
    assert model.batches_seen == 1 and trainer.global_step == n_critic + 1  # optimizer steps


class BatchRecorder(Callback):
    """The batches a training epoch sees, as the module gets them (after the transfer hooks)."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch[0].detach().clone())


def test_dcgan_steps_are_the_textbook_loops(train_config, tmp_path: Path, float64) -> None:
    """Three batches of ``model=dcgan`` under a Trainer leave both nets where the plain loop of
    pytorch/examples' dcgan/main.py leaves copies of them from the same weights, batches and noise
    (D: BCE on real and on detached fakes, one step; G: BCE of D(fakes) against "real", one step,
    on the same fakes), up to rounding: the framework's GAN is that game, nothing more. The game
    is compared in float64 (``float64``) and under plain SGD: in float32, BatchNorm grows the
    rounding of other (equivalent) kernels to a sizeable part of an update within three batches,
    for some initial weights, and Adam, which divides each gradient by its own size, grows it to
    whole learning-rate steps. The preset's optimizer is checked to be the script's Adam."""
    preset = train_config("model=dcgan").model
    assert preset.optimizer._target_ == "torch.optim.Adam" and preset.optimizer_g is None and preset.optimizer_d is None
    assert preset.optimizer.lr == 2e-4 and list(preset.optimizer.betas) == [0.5, 0.999]

    model = instantiate(train_config("model=dcgan", *PLAIN_SGD).model)
    g0, d0 = (copy.deepcopy(net) for net in (model.generator, model.discriminator))
    start = {net: copy.deepcopy(net.state_dict()) for net in (g0, d0)}
    noise: list[torch.Tensor] = []
    model.generator.register_forward_pre_hook(lambda module, args: noise.append(args[0].detach().clone()))
    batches = BatchRecorder()
    trainer = Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[batches])
    trainer.fit(model, datamodule=tiny_data(tmp_path, module=Float64Images))
    assert len(batches.batches) == len(noise) == 3 and noise[0].dtype == batches.batches[0].dtype == torch.float64

    bce = torch.nn.BCEWithLogitsLoss()
    opt_d = torch.optim.SGD(d0.parameters(), lr=SGD_LR)
    opt_g = torch.optim.SGD(g0.parameters(), lr=SGD_LR)
    for x, z in zip(batches.batches, noise):
        real, b = x * 2 - 1, x.shape[0]
        d0.zero_grad()
        bce(d0(real), torch.ones(b)).backward()
        fake = g0(z)
        bce(d0(fake.detach()), torch.zeros(b)).backward()
        opt_d.step()
        g0.zero_grad()
        bce(d0(fake), torch.ones(b)).backward()
        opt_g.step()
    for mine, textbook in ((model.generator, g0), (model.discriminator, d0)):
        # the same update to 0.01% of its size (both sides in float64 throughout, the losses too)
        assert_same_update(mine.state_dict(), textbook.state_dict(), start[textbook], 1e-4)
        for name, q in textbook.state_dict().items():
            if q.dim() == 4:
                assert (q - start[textbook][name]).norm() > 0, name  # every convolution moved


def test_channels_last_trains_the_same_game_in_the_nhwc_layout(train_config, tmp_path: Path, float64) -> None:
    """``channels_last=true`` moves the convolution weights' numbers in memory, not the numbers: a
    batch of ``model=dcgan`` (a discriminator step, a generator step, the EMA update) with NHWC
    weights moves both nets and the EMA copy as the same nets in the default layout move, from the
    same weights, batch and noise, up to the rounding of other convolution kernels; the weights
    stay NHWC through the steps. One batch, in float64 (``float64``), and plain SGD: further
    steps, float32, and Adam's division of each gradient by its own size can grow rounding by
    orders of magnitude in a GAN with BatchNorm under any change of kernel, this one among them.
    (The float32 and bfloat16 NHWC kernels themselves are torch's; a short bf16 run with
    channels_last trains in ``test_bf16_mixed_on_cpu``.)"""
    import pytorch_lightning as pl

    from genlab.train import to_channels_last

    nhwc = torch.channels_last
    default = instantiate(train_config("model=dcgan", "model.ema_decay=0.9", *PLAIN_SGD).model)
    moved = copy.deepcopy(default)
    assert to_channels_last(moved) == 9  # G's three transposed convolutions, D's three, the EMA copy's three
    convs = [n for n, p in moved.named_parameters() if p.dim() == 4]
    assert all(moved.get_parameter(n).is_contiguous(memory_format=nhwc) for n in convs)
    assert not all(default.get_parameter(n).is_contiguous(memory_format=nhwc) for n in convs)
    start = copy.deepcopy(default.state_dict())
    inputs = []
    for model in (default, moved):
        noise: list[torch.Tensor] = []
        model.generator.register_forward_pre_hook(lambda module, args: noise.append(args[0].detach().clone()))
        batches = BatchRecorder()
        pl.seed_everything(0)
        Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False,
                callbacks=[batches]).fit(model, datamodule=tiny_data(tmp_path, module=Float64Images))
        inputs.append(torch.cat([*noise, *(b.flatten(1) for b in batches.batches)], 1))
    assert torch.equal(*inputs)
    after, expected = moved.state_dict(), default.state_dict()
    for name in convs:
        assert after[name].is_contiguous(memory_format=nhwc), name
    assert_same_update(after, expected, start, 1e-9)  # the update agrees to 1e-9 of its size (measured: 3e-14)
    assert all((expected[n] - start[n]).norm() > 0 for n in convs)  # every convolution moved


@pytest.mark.parametrize("model_name", ["gan", "dcgan"])
def test_short_run_writes_samples_and_logs(train_config, tmp_path: Path, model_name: str) -> None:
    cfg = train_config(f"model={model_name}", "debug=fast", "data.source=bundled", "logger=csv")
    metrics = train(cfg)
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/d_real", "test/d_fake",
                "val/fid", "val/kid", "val/precision", "val/recall", "val/density", "val/coverage"):
        assert key in metrics
    assert metrics["val/fid"] > 0
    assert (tmp_path / "checkpoints" / "epoch_000.ckpt").is_file()  # best by val/fid
    assert 0 < metrics["train/d_real"] < 1 and 0 < metrics["train/d_fake"] < 1  # probabilities
    assert (tmp_path / "samples" / "samples_epoch000.png").is_file()
    assert "reconstructions_epoch000.png" not in {p.name for p in (tmp_path / "samples").iterdir()}


def test_wgan_gp_logs_the_penalty(train_config) -> None:
    metrics = train(train_config("model=gan", "model.loss=wgan-gp", "model.n_critic=2", "debug=fast",
                                 "data.source=bundled", "logger=csv", "test=false"))
    assert metrics["train/gp"] >= 0


# bf16 convolutions are slow on CPUs without bf16 units (AVX2 only): small batches, a few of them
SMALL_BF16 = ["data.batch_size=32", "data.eval_batch_size=64", "trainer.limit_train_batches=3",
              "trainer.limit_val_batches=1", "callbacks.sample_quality.num_samples=200"]


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_mixed_on_cpu(train_config, channels_last: bool) -> None:
    metrics = train(train_config("model=dcgan", "debug=fast", "data.source=bundled", "logger=csv",
                                 "trainer.precision=bf16-mixed", "test=false", f"channels_last={channels_last}",
                                 *SMALL_BF16))
    assert torch.isfinite(torch.tensor([metrics["train/d_loss"], metrics["train/g_loss"]])).all()


def test_resume_restores_both_optimizers_ema_and_counter(train_config, tmp_path: Path) -> None:
    common = ["model=gan", "model.ema_decay=0.99", "data.source=bundled", "trainer.limit_train_batches=4",
              "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "logger=csv", "test=false"]
    train(train_config(*common, "trainer.max_epochs=1"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=True)
    assert len(first["optimizer_states"]) == 2 and first["gan_batches_seen"] == 4
    assert any(k.startswith("ema.") for k in first["state_dict"])

    train(train_config(*common, "trainer.max_epochs=2", f"ckpt_path={last}"))
    after = torch.load(last, map_location="cpu", weights_only=True)
    assert after["gan_batches_seen"] == 8 and after["global_step"] == 16  # no batch repeated or skipped
    assert after["epoch"] == 1 and after["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"] == 2
    for opt_state in after["optimizer_states"]:  # Adam continued counting in both optimizers
        assert {int(s["step"]) for s in opt_state["state"].values()} == {8}
    assert int(after["state_dict"]["ema.n_averaged"]) == 8


def test_training_learns_image_statistics(train_config, tmp_path: Path) -> None:
    """Classifier-free check that samples stopped being noise: an untrained generator gives
    mid-grey everywhere; after training, samples are mostly ink or background like MNIST, with
    the data's mean brightness, and the discriminator tells real from fake better than at
    the start."""
    cfg = train_config("model=gan", "data.source=bundled", "data.batch_size=64", "trainer.max_epochs=40",
                       "trainer.num_sanity_val_steps=0", "trainer.check_val_every_n_epoch=40",
                       "callbacks.image_samples=null", "callbacks.sample_quality.every_n_epochs=40",
                       "logger=csv", "test=false")
    model = instantiate(cfg.model)
    dm = tiny_data(tmp_path, batch_size=64)
    dm.setup()
    z = torch.randn(1000, model.latent_dim, generator=torch.Generator().manual_seed(0))

    def mid_grey(images: torch.Tensor) -> float:
        return ((images > 0.1) & (images < 0.9)).float().mean().item()

    real = dm._splits["val"].images.float() / 255
    before = model.generate(z)
    assert mid_grey(before) > 0.9

    metrics = train(cfg)
    trained = instantiate(cfg.model)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained.load_state_dict(state["state_dict"])
    after = trained.eval().generate(z)
    assert mid_grey(after) < 0.5, mid_grey(after)  # the data: ~0.09
    assert abs(after.mean().item() - real.mean().item()) < 0.08
    assert metrics["val/d_real"] - metrics["val/d_fake"] > 0.05


def test_grad_clip_applies_to_unscaled_gradients_under_16_mixed(train_config, tmp_path: Path) -> None:
    """With a grad scaler (as under 16-mixed on GPU; here fp16 autocast on CPU), each net's
    gradient norm after the step is the clip value itself, not the clip value divided by the
    loss scale: clipping happened after unscaling."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    clip = 1e-3  # far below the true gradient norms, so clipping always acts
    model = instantiate(train_config("model=gan", f"model.grad_clip={clip}").model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**14)
    norms: dict[str, float] = {}

    class GradNorms(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            for net in ("generator", "discriminator"):
                grads = [p.grad for p in getattr(pl_module, net).parameters() if p.grad is not None]
                norms[net] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()

    trainer = Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      plugins=[MixedPrecision("16-mixed", device="cpu", scaler=scaler)], callbacks=[GradNorms()])
    trainer.fit(model, datamodule=tiny_data(tmp_path))
    assert scaler.get_scale() >= 2.0**13  # the scaler was in use (and found finite gradients)
    for net, norm in norms.items():
        assert norm == pytest.approx(clip, rel=1e-2), (net, norm)


def test_schedulers_are_stepped_by_the_module_and_saved(train_config, tmp_path: Path) -> None:
    step_lr = "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"
    cfg = train_config("model=gan", f"model.scheduler_g={step_lr}", f"model.scheduler_d={step_lr}",
                       "data.source=bundled", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                       "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "logger=csv", "test=false")
    train(cfg)
    # the module steps its schedulers after each epoch's last batch, before the epoch's checkpoint
    # is written, so last.ckpt holds both epochs' steps and a resumed run misses none
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert [s["last_epoch"] for s in state["lr_schedulers"]] == [2, 2]
    assert [g["lr"] for o in state["optimizer_states"] for g in o["param_groups"]] == pytest.approx([5e-5, 5e-5])


def test_ema_matches_torchs_averaged_model_across_a_reload() -> None:
    """genlab's EMA (its update reads no count from the device) computes torch's
    ``AveragedModel`` EMA exactly, parameters and BatchNorm buffers, also after a state reload."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from genlab.models.ema import EMA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    reference = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema = EMA(net, 0.9)
    for step in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(16, 4))  # BatchNorm's running statistics move too
        reference.update_parameters(net)
        ema.update_parameters(net)
        if step == 2:  # as a resumed run: a new EMA that loads the saved state
            state = ema.state_dict()
            ema = EMA(net, 0.9)
            ema.load_state_dict(state)
    ours, theirs = ema.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and int(ours["n_averaged"]) == 6
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_sample_quality_every_few_epochs_keeps_the_best_checkpoint_by_fid(train_config, tmp_path: Path) -> None:
    """``callbacks.sample_quality.every_n_epochs=2`` with validation every epoch: ``val/fid``
    exists on every second epoch only, and the best checkpoint is looked for on those epochs
    (not on the others, where Lightning would stop the run for the missing metric)."""
    metrics = train(train_config("model=gan", "data.source=bundled", "trainer.max_epochs=4", "trainer.limit_train_batches=2",
                                 "trainer.limit_val_batches=2", "trainer.num_sanity_val_steps=0", "logger=csv", "test=false",
                                 "trainer.enable_progress_bar=false", "callbacks.sample_quality.every_n_epochs=2",
                                 "callbacks.sample_quality.num_samples=200"))
    assert math.isfinite(metrics["val/fid"])
    best = sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    assert len(best) == 1 and best[0] in ("epoch_001.ckpt", "epoch_003.ckpt")


@pytest.mark.parametrize("model", ["model=gan", "model=vae"])
def test_monitor_none_keeps_last_ckpt_only_and_eval_takes_it(train_config, tmp_path: Path, model: str) -> None:
    """``monitor=none``: no metric picks a best checkpoint, so none is kept beside ``last.ckpt``
    (an ``epoch_*.ckpt`` would be the newest epoch, which ``eval.py`` takes before ``last.ckpt``;
    for the VAE its callback beside last.ckpt's had the same state key, which Lightning refused)."""
    from genlab.utils.runs import checkpoint_of

    quality = ["callbacks.sample_quality.num_samples=200"] if model == "model=gan" else []
    train(train_config(model, "monitor=none", "data.source=bundled", "trainer.max_epochs=2",
                       "trainer.limit_train_batches=2", "trainer.limit_val_batches=2", "trainer.num_sanity_val_steps=0",
                       "logger=csv", "test=false", "trainer.enable_progress_bar=false", *quality))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert checkpoint_of(str(tmp_path), tmp_path.parent) == str(tmp_path / "checkpoints" / "last.ckpt")


# ----------------------------------------------------------------- R1 and DiffAugment
def _gan(**kwargs):
    from functools import partial

    from genlab.models import GAN
    from genlab.nets import image as nets

    torch.manual_seed(0)
    return GAN(nets.DCGANGenerator(latent_dim=8), nets.DCGANDiscriminator(), optimizer=partial(torch.optim.Adam, lr=1e-3),
               latent_dim=8, **kwargs)


def test_residual_blocks_deepen_the_dcgan_discriminator_and_start_as_identities_when_zeroed() -> None:
    """``res_blocks=n`` adds n residual blocks at each resolution of the DCGAN discriminator
    (spectral norm on their convolutions too, when asked); with every block's last convolution
    zeroed, each block is the identity and the net computes what the plain one with the same other
    weights computes."""
    from genlab.nets import image as nets

    torch.manual_seed(0)
    deep, plain = nets.DCGANDiscriminator(res_blocks=2), nets.DCGANDiscriminator()
    assert len(with_identity_blocks(deep, plain)) == 4
    x = torch.rand(3, 1, 28, 28)
    assert deep(x).shape == (3,)
    assert torch.allclose(deep(x), plain(x), atol=1e-6)
    normed = nets.DCGANDiscriminator(res_blocks=1, spectral_norm=True)
    convs = [m for m in normed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 + 2 * 2 and all(torch.nn.utils.parametrize.is_parametrized(m) for m in convs)


def test_residual_blocks_deepen_the_dcgan_generator_and_start_as_identities_when_zeroed() -> None:
    """``res_blocks=n`` adds n residual blocks after the DCGAN generator's 7x7 and 14x14 maps; with
    every block's last convolution zeroed, the net computes what the plain one computes, in
    training and in eval mode."""
    from genlab.nets import image as nets

    torch.manual_seed(0)
    deep, plain = nets.DCGANGenerator(latent_dim=8, res_blocks=2), nets.DCGANGenerator(latent_dim=8)
    assert len(with_identity_blocks(deep, plain)) == 4
    z = torch.randn(3, 8)
    images = deep(z)  # one training-mode pass each: it updates the BatchNorm statistics alike
    assert images.shape == (3, 1, 28, 28)
    assert torch.allclose(images, plain(z), atol=1e-6)
    assert torch.allclose(deep.eval()(z), plain.eval()(z), atol=1e-6)


def test_a_third_channels_entry_gives_the_dcgan_generator_28x28_maps_and_a_3x3_conv_to_the_image() -> None:
    """``channels=[c1, c2, c3]``: the last transposed convolution makes c3 maps at 28x28 and a 3x3
    convolution draws the image from them; two entries keep the plain net, its image convolution
    where the checkpoints written before the option hold it (``body.7``)."""
    from genlab.nets import image as nets

    plain, full = nets.DCGANGenerator(latent_dim=8), nets.DCGANGenerator(latent_dim=8, channels=[16, 8, 4])
    assert isinstance(plain.body[7], torch.nn.ConvTranspose2d) and plain.body[7].out_channels == 1
    assert "body.7.bias" in plain.state_dict() and isinstance(plain.body[8], torch.nn.Tanh)
    last_up = [m for m in full.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    assert (last_up.in_channels, last_up.out_channels) == (8, 4)
    head = [m for m in full.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in head] == [(4, 1, (3, 3))]
    images = full(torch.randn(5, 8))
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1.0
    with pytest.raises(ValueError, match="7x7 and 14x14"):
        nets.DCGANGenerator(channels=[64])


@pytest.mark.parametrize("channels_last", [False, True])
def test_r1_penalty_is_the_squared_input_gradient_on_real_images_every_k_batches(channels_last: bool) -> None:
    from genlab.models import gan_losses
    from genlab.train import to_channels_last

    gan = _gan(r1_gamma=2.0, r1_every=4)
    if channels_last:  # the presets' layout: the penalty's double backward runs NHWC kernels
        to_channels_last(gan)
    real, fake = torch.rand(5, 1, 28, 28) * 2 - 1, torch.rand(5, 1, 28, 28) * 2 - 1
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gan.discriminator(x).sum(), x)
    reference = grad.flatten(1).pow(2).sum(1).mean()
    loss, parts = gan.discriminator_loss(real, fake)  # batch 0: due
    assert torch.allclose(parts["r1"], reference, rtol=1e-5)
    plain = gan_losses.d_loss("nonsaturating", gan.discriminator(real), gan.discriminator(fake))
    assert torch.allclose(loss, plain + 0.5 * 2.0 * 4 * reference, rtol=1e-5)
    parts["r1"].backward()  # a penalty the discriminator's weights learn from (double backward)
    assert gan.discriminator.body[0].weight.grad.abs().sum() > 0
    gan.batches_seen = 1
    assert "r1" not in gan.discriminator_loss(real, fake)[1]  # lazy: not on the batches between


def test_the_losses_and_penalties_keep_float64_and_take_half_precision_logits_in_float32(float64) -> None:
    """A game in float64 (as the tests that compare it with textbook loops play it) keeps float64
    through its losses and its R1 and gradient penalties, whose inputs go to the float64
    discriminator; the logits of a half-precision forward are taken in float32."""
    from genlab.models import gan_losses

    gan = _gan(r1_gamma=1.0, r1_every=1)
    real, fake = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 28, 28) * 2 - 1
    loss, parts = gan.discriminator_loss(real, fake)
    assert loss.dtype == parts["r1"].dtype == torch.float64
    assert gan_losses.gradient_penalty(gan.discriminator, real, fake).dtype == torch.float64
    logits = torch.randn(6)
    for name in LOSSES:
        for dtype, wide in ((torch.float64, torch.float64), (torch.bfloat16, torch.float32), (torch.float16, torch.float32)):
            low = logits.to(dtype)
            assert gan_losses.d_loss(name, low, -low).dtype == gan_losses.g_loss(name, low).dtype == wide, (name, dtype)
            assert gan_losses.e_loss(name, low).dtype == gan_losses.mean_output(name, low).dtype == wide, (name, dtype)


class LoggedRecorder(Callback):
    """Every metric name a training run wrote to its loggers."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.names.update(trainer.logged_metrics)


def test_lazy_r1_is_logged_when_its_batches_and_the_log_steps_never_meet(train_config, tmp_path: Path) -> None:
    """R1 every 2 batches (0, 2, ...) and logs every 2 batches (after 1, 3, ...): ``train/r1``
    still reaches the logger, as the latest penalty computed."""
    model = instantiate(train_config("model=dcgan", "model.r1_gamma=1.0", "model.r1_every=2").model)
    recorder = LoggedRecorder()
    trainer = Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0, log_every_n_steps=2,
                      logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[recorder])
    trainer.fit(model, datamodule=tiny_data(tmp_path))
    assert {"train/d_loss", "train/r1"} <= recorder.names
    assert float(trainer.logged_metrics["train/r1"]) > 0


def test_diffaugment_applies_one_policy_to_real_and_fake_and_passes_gradients_to_g() -> None:
    from genlab.models.augment import diff_augment, parse_policy
    from genlab.utils.errors import GenlabError

    gan = _gan(diffaugment="color,translation,cutout")
    assert gan.augment_policy == ("color", "translation", "cutout")
    seen = []
    gan.critic = lambda x, labels: seen.append(x) or gan.discriminator(x)
    real = torch.full((4, 1, 28, 28), 0.5)
    fake = gan._fake(4)
    gan.discriminator_loss(real, fake.detach())
    assert len(seen) == 2 and not torch.equal(seen[0], real)  # both augmented ...
    # ... by the same policy: cutout's grey squares are in the real images as in the fakes
    assert all(((batch == 0).flatten(1).sum(1) >= 14 * 14).all() for batch in seen)
    g_loss, _ = gan.generator_loss(fake)
    g_loss.backward()  # through the augmentations to the generator
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gan.generator.parameters() if p.requires_grad)
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    diff_augment(x, ("translation", "color")).sum().backward()
    assert x.grad.abs().sum() > 0
    moved = diff_augment(torch.ones(64, 1, 28, 28), ("translation",))
    assert (moved == -1).any() and moved.max() == 1  # shifted in, the border filled with the background
    with pytest.raises(GenlabError, match="'flip' is unknown"):
        parse_policy("translation,flip")

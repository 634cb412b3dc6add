"""Class-conditional models: nets that take labels, short runs that draw the requested class,
sampling by class from a checkpoint alone, and the refusals."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from genlab.metrics.feature_nets import load_feature_net
from genlab.metrics.image_quality import class_accuracy, extract
from genlab.models import GAN, gan_losses
from genlab.nets import image as nets
from genlab.train import train
from genlab.utils.errors import GenlabError
from test_cli import run

SHORT = ["data.source=bundled", "logger=csv", "test=false", "trainer.num_sanity_val_steps=0"]


@pytest.mark.parametrize("cls", [nets.MLPDiscriminator, nets.DCGANDiscriminator])
def test_projection_discriminator_depends_on_the_label(cls) -> None:
    torch.manual_seed(0)
    d = cls(num_classes=10)
    x = torch.rand(4, 1, 28, 28)
    a, b = d(x, torch.tensor([0, 1, 2, 3])), d(x, torch.tensor([4, 5, 6, 7]))
    assert a.shape == (4,) and not torch.allclose(a, b)
    a.sum().backward()
    assert d.embed.weight.grad is not None and d.embed.weight.grad.abs().sum() > 0
    assert set(cls().state_dict()) < set(d.state_dict())  # unconditional: the same net without the embedding


@pytest.mark.parametrize("encoder", [nets.MLPEncoder, nets.ConvEncoder])
def test_conditional_encoder_sees_the_label(encoder) -> None:
    torch.manual_seed(0)
    enc = encoder(latent_dim=4, num_classes=10)
    x = torch.rand(3, 1, 28, 28)
    mu_a, _ = enc(x, torch.tensor([0, 0, 0]))
    mu_b, _ = enc(x, torch.tensor([9, 9, 9]))
    assert mu_a.shape == (3, 4) and not torch.allclose(mu_a, mu_b)


def test_gradient_penalty_on_labelled_interpolates_matches_autograd() -> None:
    torch.manual_seed(0)
    d = nets.MLPDiscriminator(num_classes=10)
    real, fake, labels = torch.rand(5, 1, 28, 28) * 2 - 1, torch.rand(5, 1, 28, 28) * 2 - 1, torch.arange(5)
    torch.manual_seed(1)
    gp = gan_losses.gradient_penalty(lambda x: d(x, labels), real, fake)
    torch.manual_seed(1)
    eps = torch.rand(5, 1, 1, 1)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat, labels).sum(), x_hat)
    assert torch.allclose(gp, (grad.flatten(1).norm(dim=1) - 1).pow(2).mean(), atol=1e-6)


def accuracy_of_samples(model) -> float:
    labels = torch.arange(1000) % 10
    z = model.sample_latents(1000, generator=torch.Generator().manual_seed(0))
    fake = model.generate(z, labels).cpu()
    return class_accuracy(extract(load_feature_net("mnist"), fake), labels)


def test_short_conditional_vae_draws_the_requested_class(train_config, tmp_path: Path) -> None:
    """A few epochs on the bundled MNIST: the shipped classifier assigns the samples to the class
    they were drawn for far above chance (0.1; about 0.3 after these 450 steps, 0.8 after 60
    epochs); the epoch grid has one row of 8 per class, named."""
    cfg = train_config("model=vae", "model.conditional=true", *SHORT, "trainer.max_epochs=4", "data.batch_size=32")
    train(cfg)
    assert cfg.model.num_classes == 10  # from the data
    model = instantiate(cfg.model)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    accuracy = accuracy_of_samples(model.eval())
    assert accuracy > 0.2, accuracy
    from PIL import Image

    grid = Image.open(tmp_path / "samples" / "samples_epoch003.png")
    assert grid.height == 10 * 30 + 2 and grid.width > 8 * 30 + 2  # a row of 8 per class, names in a margin


def test_short_conditional_gan_logs_class_accuracy(train_config, tmp_path: Path) -> None:
    """The conditional GAN's sample-quality metrics add ``val/class_accuracy``; its grid has a row
    per class. (Its samples take longer than a test to become digits: docs/conditional.md.)"""
    metrics = train(train_config("model=dcgan", "model.conditional=true", *SHORT, "trainer.max_epochs=1",
                                 "trainer.limit_train_batches=10", "callbacks.sample_quality.num_samples=300"))
    assert 0 <= metrics["val/class_accuracy"] <= 1 and 0 <= metrics["val/class_tv"] <= 1
    from PIL import Image

    assert Image.open(tmp_path / "samples" / "samples_epoch000.png").height == 10 * 30 + 2


def test_generate_by_class_from_the_checkpoint_alone(tmp_path: Path) -> None:
    env = {"GENLAB_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    trained = run("train.py", "model=vae", "model.conditional=true", "debug=fast", "data.source=bundled",
                  f"hydra.run.dir={tmp_path}/run", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "three.png"
    made = run("generate.py", f"ckpt_path={ckpt}", "labels=[3,3,7]", f"out={out}", "save_tensor=true", env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    saved = torch.load(out.with_suffix(".pt"), weights_only=True)
    assert saved["images"].shape == (3, 1, 28, 28) and saved["labels"].tolist() == [3, 3, 7]
    grid = run("generate.py", f"ckpt_path={ckpt}", "labels=all", f"out={tmp_path}/all.png", env=env)
    assert grid.returncode == 0 and (tmp_path / "all.png").is_file()
    between = run("generate.py", f"ckpt_path={ckpt}", "mode=interpolate", "labels=[1,7]", "num_samples=2",
                  f"out={tmp_path}/between.png", env=env)
    assert between.returncode == 0, between.stderr[-3000:]
    evaluated = run("eval.py", f"ckpt_path={ckpt}", "metrics.num_samples=500", "nll_examples=100", "logger=csv",
                    env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["test/class_accuracy"] <= 1 and metrics["test/classifier_accuracy"] > 0.95
    assert metrics["test/intra_fid"] > 0 and "test/nll" in metrics and "test/class_tv" in metrics
    wrong = run("generate.py", f"ckpt_path={ckpt}", "labels=[12]", env=env)
    assert wrong.returncode != 0 and "classes are 0..9" in wrong.stderr and "Traceback" not in wrong.stderr


def test_labels_on_an_unconditional_model_are_refused(train_config) -> None:
    model = instantiate(train_config("model=gan").model)
    with pytest.raises(GenlabError, match="not class-conditional"):
        model.generate(torch.randn(2, model.latent_dim), torch.tensor([1, 2]))
    assert model.generate(torch.randn(2, model.latent_dim)).shape == (2, 1, 28, 28)


def test_conditional_needs_data_with_classes() -> None:
    with pytest.raises(GenlabError, match="needs data with classes"):  # no num_classes filled in from data
        GAN(nets.MLPGenerator(), nets.MLPDiscriminator(), optimizer=partial(torch.optim.Adam, lr=1e-3), conditional=True)


def test_conditional_dcgan_under_bf16_mixed(train_config) -> None:
    metrics = train(train_config("model=dcgan", "model.conditional=true", "model.loss=wgan-gp", "debug=fast",
                                 "data.source=bundled", "logger=csv", "test=false", "trainer.precision=bf16-mixed",
                                 "data.batch_size=32", "data.eval_batch_size=64", "trainer.limit_train_batches=3",
                                 "trainer.limit_val_batches=1", "callbacks.sample_quality.num_samples=200"))
    assert torch.isfinite(torch.tensor([metrics["train/d_loss"], metrics["train/g_loss"], metrics["train/gp"]])).all()
    assert 0 <= metrics["val/class_accuracy"] <= 1

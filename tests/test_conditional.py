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


@pytest.mark.parametrize("cls", [nets.MLPDiscriminator, nets.DCGANDiscriminator, partial(nets.DCGANDiscriminator, res_blocks=1)],
                         ids=["mlp", "dcgan", "dcgan-residual"])
def test_projection_discriminator_depends_on_the_label(cls) -> None:
    torch.manual_seed(0)
    d = cls(num_classes=10)
    x = torch.rand(4, 1, 28, 28)
    a, b = d(x, torch.tensor([0, 1, 2, 3])), d(x, torch.tensor([4, 5, 6, 7]))
    assert a.shape == (4,) and not torch.allclose(a, b)
    a.sum().backward()
    assert d.embed.weight.grad is not None and d.embed.weight.grad.abs().sum() > 0
    assert set(cls().state_dict()) < set(d.state_dict())  # unconditional: the same net without the embedding


@pytest.mark.parametrize("encoder", [nets.MLPEncoder, nets.ConvEncoder, partial(nets.ConvEncoder, res_blocks=1)],
                         ids=["mlp", "conv", "conv-residual"])
def test_conditional_encoder_sees_the_label(encoder) -> None:
    torch.manual_seed(0)
    enc = encoder(latent_dim=4, num_classes=10)
    x = torch.rand(3, 1, 28, 28)
    mu_a, _ = enc(x, torch.tensor([0, 0, 0]))
    mu_b, _ = enc(x, torch.tensor([9, 9, 9]))
    assert mu_a.shape == (3, 4) and not torch.allclose(mu_a, mu_b)


def test_auxiliary_classifier_terms_are_the_cross_entropies_of_the_class_head() -> None:
    """AC-GAN: the discriminator's loss adds aux_weight x CE(head(real), labels), the generator's
    aux_weight x CE(head(fake), labels); the head learns on real images only, and a discriminator
    without a head leaves the GAN as it was."""
    torch.manual_seed(0)
    d = nets.DCGANDiscriminator(num_classes=10, aux_classifier=True)
    logit, classes = d(torch.rand(4, 1, 28, 28), torch.arange(4), classes=True)
    assert logit.shape == (4,) and classes.shape == (4, 10)
    optimizer = partial(torch.optim.Adam, lr=1e-3)
    gan = GAN(nets.DCGANGenerator(latent_dim=8, num_classes=10), d, optimizer=optimizer, latent_dim=8,
              conditional=True, num_classes=10, aux_weight=0.5)
    real, fake, labels = torch.rand(6, 1, 28, 28) * 2 - 1, torch.rand(6, 1, 28, 28) * 2 - 1, torch.arange(6)
    d_loss, d_parts = gan.discriminator_loss(real, fake, labels)
    expected_d = torch.nn.functional.cross_entropy(d(real, labels, classes=True)[1], labels)
    d_gan = gan_losses.d_loss("nonsaturating", d(real, labels), d(fake, labels))
    assert torch.allclose(d_parts["d_aux"], expected_d) and torch.allclose(d_loss, d_gan + 0.5 * expected_d)
    g_loss, g_parts = gan.generator_loss(fake, labels)
    expected_g = torch.nn.functional.cross_entropy(d(fake, labels, classes=True)[1], labels)
    assert torch.allclose(g_loss, gan_losses.g_loss("nonsaturating", d(fake, labels)) + 0.5 * expected_g)
    assert torch.allclose(g_parts["g_aux"], expected_g)
    plain = GAN(nets.DCGANGenerator(latent_dim=8, num_classes=10), nets.DCGANDiscriminator(num_classes=10),
                optimizer=optimizer, latent_dim=8, conditional=True, num_classes=10)
    assert plain.aux_weight == 0.0


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
    epochs), also in ``val/class_accuracy``; the epoch grid has one row of 8 per class, named."""
    cfg = train_config("model=vae", "model.conditional=true", *SHORT, "trainer.max_epochs=4", "data.batch_size=32")
    metrics = train(cfg)
    assert cfg.model.num_classes == 10  # from the data
    model = instantiate(cfg.model)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    accuracy = accuracy_of_samples(model.eval())
    assert accuracy > 0.2, accuracy
    assert metrics["val/class_accuracy"] > 0.2  # measured each epoch (1,000 draws)
    from PIL import Image

    grid = Image.open(tmp_path / "samples" / "samples_epoch003.png")
    assert grid.height == 10 * 30 + 2 and grid.width > 8 * 30 + 2  # a row of 8 per class, names in a margin


def test_short_conditional_gan_draws_the_requested_class(train_config, tmp_path: Path) -> None:
    """A conditional DCGAN with the auxiliary class head, 5 short epochs on the bundled MNIST (285
    steps): its ``val/class_accuracy`` (sample-quality metrics) is far above chance (0.1; 0.3
    measured), and its grid has a row per class. Without the head the classes come later
    (docs/conditional.md)."""
    metrics = train(train_config("model=dcgan", "model.conditional=true", "model.discriminator.aux_classifier=true",
                                 "model.aux_weight=3", *SHORT, "trainer.max_epochs=5", "data.batch_size=64",
                                 "callbacks.sample_quality.num_samples=500", "callbacks.sample_quality.every_n_epochs=5"))
    assert metrics["val/class_accuracy"] > 0.2 and 0 <= metrics["val/class_tv"] <= 1
    assert metrics["train/g_aux"] > 0 and metrics["train/d_aux"] > 0
    from PIL import Image

    assert Image.open(tmp_path / "samples" / "samples_epoch004.png").height == 10 * 30 + 2


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
                    f"data.root={tmp_path}", "data.eval_batch_size=250", env=env)  # the data's keys, without a +
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


# ----------------------------------------------------------------- text: labelled corpora
SEA = "wave ship salt tide sail harbour anchor storm gull deck".split()
LAND = "hill field stone tree meadow road barn plough hedge farm".split()


def labelled_corpus(tmp_path: Path, n: int = 400) -> Path:
    """Two classes with words of their own (and a few shared): a conditional model that uses the
    label writes lines a bag-of-words classifier tells apart; one that ignores it cannot."""
    gen = torch.Generator().manual_seed(0)
    lines = []
    for i in range(n):
        name, words = ("sea", SEA) if i % 2 else ("land", LAND)
        picks = torch.randint(len(words), (int(torch.randint(4, 8, (1,), generator=gen)),), generator=gen)
        lines.append(f"{name}\tthe {' '.join(words[j] for j in picks)} and the {words[int(picks[0])]}")
    path = tmp_path / "labelled.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_labelled_text_data_and_its_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genlab.data import TextDataModule

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    path = labelled_corpus(tmp_path)
    dm = TextDataModule(corpus="file", path=str(path), label="column", min_freq=1, val_size=40, test_size=40)
    dm.setup()
    assert dm.class_names == ["land", "sea"] and dm.model_settings()["num_classes"] == 2
    tokens, lengths, labels = next(iter(dm.val_dataloader()))
    assert labels.shape == lengths.shape and set(labels.tolist()) == {0, 1}
    for row, label in zip(tokens.tolist(), labels.tolist()):  # each line keeps its own label
        words = set(dm.tokenizer.decode(row).split())
        assert words & set((LAND, SEA)[label]) and not words & set((SEA, LAND)[label])
    classifier = dm.classifier()
    assert classifier.accuracy(dm.token_lists("val"), dm.labels("val"), balanced=True) == 1.0
    assert len(list((tmp_path / "cache").glob("bow-*.pt"))) == 1  # fitted once, then read back
    assert dm.classifier().weight.equal(classifier.weight)

    with pytest.raises(GenlabError, match="does not fit data.corpus"):
        TextDataModule(corpus="file", path=str(path), label="genre")
    (tmp_path / "bad.txt").write_text("sea\tthe ship\nno tab on this line\n", encoding="utf-8")
    with pytest.raises(GenlabError, match="line 2: data.label=column reads 'label<TAB>text'"):
        TextDataModule(corpus="file", path=str(tmp_path / "bad.txt"), label="column").setup()
    genre = TextDataModule(corpus="shakespeare", label="genre", max_examples=3000)
    genre.setup()
    assert genre.class_names == ["comedies", "histories", "problems", "roman", "romances", "tragedies"]
    hamlet = next(i for i, t in enumerate(genre.texts["train"] + genre.texts["val"] + genre.texts["test"])
                  if "Hamlet" in t or "Horatio" in t)
    every = torch.cat([genre.labels(s) for s in ("train", "val", "test")])
    assert genre.class_names[int(every[hamlet])] == "tragedies"


@pytest.mark.parametrize("model", ["text_lm", "text_vae"])
def test_short_conditional_text_model_writes_the_requested_class(tmp_path: Path, model: str) -> None:
    """A few epochs on a two-class labelled file (the VAE without its 2,000-step KL warm-up and
    free bits, which leave the class in z, for free, and the class priors the samples come from
    behind for the first hundreds of steps): the bag-of-words classifier assigns the samples to the class they were drawn for far
    above chance (0.5); ``generate.py labels=<name>`` from the
    checkpoint alone writes ``class<TAB>sentence`` lines; ``eval.py`` reports
    ``test/class_accuracy`` beside the classifier's own accuracy; a class the data lacks is
    refused with one line."""
    env = {"GENLAB_ROOT": str(tmp_path), "WANDB_MODE": "disabled", "GENLAB_CACHE": str(tmp_path / "cache")}
    path = labelled_corpus(tmp_path, 600)
    run_dir = tmp_path / "run"
    trained = run("train.py", f"model={model}", "data=text", "data.corpus=file", f"data.path={path}",
                  "data.label=column", "model.conditional=true", "data.min_freq=1", "data.batch_size=32",
                  "logger=csv", *(["trainer.max_epochs=6", "model.nll_samples=2", "model.kl_warmup_steps=0", "model.free_bits=0"]
                                 if model == "text_vae" else ["trainer.max_epochs=3"]),
                  "callbacks.text_samples.num_samples=100", f"hydra.run.dir={run_dir}", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    info = json.loads((run_dir / "run_info.json").read_text())["final_metrics"]
    assert info["val/classifier_accuracy"] == 1.0 and info["val/class_accuracy"] > 0.8, info
    shown = (run_dir / "samples" / "text_epoch000.txt").read_text()
    assert "sample (land)\t" in shown and "sample (sea)\t" in shown
    made = run("generate.py", f"ckpt_path={run_dir}", "labels=sea", "num_samples=20", f"out={tmp_path}/sea.txt", env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    lines = (tmp_path / "sea.txt").read_text().splitlines()
    assert len(lines) == 20 and all(line.startswith("sea\t") for line in lines)
    sea_words = sum(w in SEA for line in lines for w in line.split()[1:])
    land_words = sum(w in LAND for line in lines for w in line.split()[1:])
    assert sea_words > 4 * land_words, lines
    evaluated = run("eval.py", f"ckpt_path={run_dir}", "metrics.num_samples=100", "logger=csv", "nll_examples=20", env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert metrics["test/classifier_accuracy"] == 1.0 and metrics["test/class_accuracy"] > 0.8
    wrong = run("generate.py", f"ckpt_path={run_dir}", "labels=[tragedies]", env=env)
    assert wrong.returncode != 0 and "'tragedies' is not a class of this model; its classes are land, sea" in wrong.stderr
    assert "Traceback" not in wrong.stderr

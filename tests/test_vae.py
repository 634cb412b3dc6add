"""The VAE objective: its terms, a short run that learns, and resuming from a checkpoint."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from pytorch_lightning import Callback

from genlab.data import MNISTDataModule
from genlab.train import train
from conftest import with_identity_blocks


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def epoch_values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


def test_elbo_terms_and_kl(train_config) -> None:
    model = instantiate(train_config("model=vae", "model.latent_dim=4").model)
    x = torch.rand(5, 1, 28, 28)
    log_px, kl = model.elbo_terms(x)
    assert log_px.shape == kl.shape == (5,)
    assert (log_px < 0).all() and (kl >= 0).all()
    # KL vanishes when q(z|x) is the prior
    model.encoder.forward = lambda x: (torch.zeros(len(x), 4), torch.zeros(len(x), 4))
    assert torch.allclose(model.elbo_terms(x)[1], torch.zeros(5))


def test_kl_warmup_weight(train_config) -> None:
    model = instantiate(train_config("model.kl_warmup_steps=100", "model.beta=2.0").model)
    assert model.kl_weight() == 0.0  # global_step is 0 outside a trainer


@pytest.mark.parametrize("model_name", ["vae", "vae_conv", "text_vae"])
def test_the_decoders_meet_the_decoder_protocol(train_config, model_name: str) -> None:
    """The VAE needs ``log_prob`` and ``generate`` of its decoder, and ``units`` of a decoder over
    tokens (for perplexities); the loss's reconstruction term is ``-log_prob``, per example."""
    from genlab.data.tokenizers import PAD
    from genlab.nets.likelihoods import Decoder, TokenDecoder

    text = model_name == "text_vae"
    model = instantiate(train_config(f"model={model_name}", "model.latent_dim=4",
                                     *(["data=text", "model.encoder.vocab_size=30", "model.decoder.vocab_size=30"] if text else [])).model)
    assert isinstance(model.decoder, Decoder) and isinstance(model.decoder, TokenDecoder) == text == model.per_token
    if text:
        x = torch.randint(4, model.decoder.vocab_size, (3, 7))
        x[1, 4:] = PAD  # a shorter sentence
    else:
        x = torch.rand(3, 1, 28, 28)
    model.eval()  # no dropout: the same z gives the same likelihood
    torch.manual_seed(0)
    nll, kl_dims, _ = model._elbo_parts(x)
    torch.manual_seed(0)
    mu, logvar = model.encoder(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    assert nll.shape == (3,) and (nll > 0).all()
    assert torch.allclose(nll, -model.decoder.log_prob(x, z))


def test_residual_blocks_deepen_the_conv_nets_and_start_as_identities_when_zeroed(train_config) -> None:
    """``res_blocks=n`` adds n residual blocks at each resolution of the conv encoder and decoder
    (shapes kept); a block whose last convolution is zero is the identity, so with all of them
    zeroed the nets compute what the plain conv nets with the same other weights compute."""
    cfg = train_config("model=vae_conv", "model.latent_dim=4", "model.encoder.res_blocks=2", "model.decoder.res_blocks=2")
    deep, plain = instantiate(cfg.model), instantiate(train_config("model=vae_conv", "model.latent_dim=4").model)
    assert len(with_identity_blocks(deep, plain)) == 8
    x, z = torch.rand(3, 1, 28, 28), torch.randn(3, 4)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(deep.encoder(x), plain.encoder(x)))
    assert torch.allclose(deep.decoder(z), plain.decoder(z), atol=1e-6)
    assert deep.decoder(z).shape == (3, 1, 28, 28)


@pytest.mark.parametrize(("overrides", "weight", "free_bits"), [
    ((), 1.0, 0.0), (("model.beta=0.5",), 0.5, 0.0), (("+model.free_bits=0.5",), 1.0, 0.5),
    (("model.beta=2.0", "+model.free_bits=0.5"), 2.0, 0.5)], ids=["elbo", "beta", "free_bits", "beta-free_bits"])
def test_training_loss_is_the_weighted_negative_elbo(train_config, overrides: tuple, weight: float,
                                                     free_bits: float) -> None:
    """The training step's loss, from the same z sample: −E[log p(x|z)] + weight · KL, the KL
    floored per latent dimension at ``free_bits`` (over the batch mean) when that is set."""
    model = instantiate(train_config("model=vae", "model.latent_dim=4", *overrides).model)
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(0)
    nll, kl_dims, _ = model._elbo_parts(x)
    kl = kl_dims.mean(0).clamp(min=free_bits).sum() if free_bits > 0 else kl_dims.sum(1).mean()
    torch.manual_seed(0)
    loss = model._step((x, None), "train")
    assert torch.allclose(loss, nll.mean() + weight * kl, rtol=1e-6)


def test_iwae_objective_is_minus_the_importance_weighted_bound(train_config) -> None:
    """``model.iwae_samples=k``: the training loss is -(logsumexp_i log w_i - log k), with
    log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k draws z_i ~ q(z|x), the same draws
    as a hand computation; it takes gradients to both nets, is at most the draws' mean -ELBO,
    and refuses the ELBO's knobs."""
    model = instantiate(train_config("model=vae", "model.latent_dim=4", "model.iwae_samples=8").model)
    x = torch.rand(5, 1, 28, 28)
    torch.manual_seed(0)
    loss = model._step((x, None), "train")
    torch.manual_seed(0)
    mu, logvar = model.encoder(x)
    eps = torch.randn(8, *mu.shape)
    z = mu + torch.exp(0.5 * logvar) * eps
    normal = torch.distributions.Normal
    log_w = torch.stack([model.decoder.log_prob(x, z[i]) + normal(0.0, 1.0).log_prob(z[i]).sum(1)
                         - normal(mu, torch.exp(0.5 * logvar)).log_prob(z[i]).sum(1) for i in range(8)])
    reference = -(torch.logsumexp(log_w, 0) - math.log(8)).mean()
    assert torch.allclose(loss, reference, rtol=1e-5)
    assert loss <= -log_w.mean() + 1e-4  # Jensen: the bound is tighter than the ELBO estimate
    loss.backward()
    assert model.encoder.body[1][0].weight.grad.abs().sum() > 0 and model.decoder.body[0].weight.grad.abs().sum() > 0
    with pytest.raises(Exception, match="IWAE bound itself"):  # a GenlabError, inside Hydra's error
        instantiate(train_config("model=vae", "model.iwae_samples=8", "model.kl_warmup_steps=100").model)


def test_mlp_nets_take_their_activation() -> None:
    from genlab.nets.image import MLPDecoder, MLPEncoder
    from genlab.utils.errors import GenlabError

    kinds = {type(m) for m in MLPEncoder(hidden_dims=[64, 32], activation="silu").modules()}
    assert torch.nn.SiLU in kinds and torch.nn.ReLU not in kinds
    assert torch.nn.ReLU in {type(m) for m in MLPDecoder(hidden_dims=[64]).modules()}  # the default
    with pytest.raises(GenlabError, match="activation='tanh' is unknown"):
        MLPDecoder(activation="tanh")


def test_output_bias_starts_at_the_mean_image_and_a_resumed_run_keeps_its_own(train_config, tmp_path: Path) -> None:
    """model.init_output_bias: at the start of fitting the decoder's output bias is the log-odds of
    the mean training image; resuming from a checkpoint restores the checkpoint's bias instead."""
    from pytorch_lightning import Trainer

    from genlab.utils.errors import GenlabError

    seen: list[torch.Tensor] = []

    class Look(Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            seen.append(pl_module.decoder.body[-1].bias.detach().clone())

    def fit(max_steps: int, ckpt_path: str | None = None):
        model = instantiate(train_config("model.init_output_bias=true").model)
        dm = MNISTDataModule(root=str(tmp_path), source="bundled", batch_size=32)
        trainer = Trainer(max_steps=max_steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[Look()])
        trainer.fit(model, dm, ckpt_path=ckpt_path)
        return model, dm, trainer

    model, dm, trainer = fit(1)
    mean = dm.images("train").mean(0).flatten().clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(seen[0]), mean, atol=1e-5)
    trained = model.decoder.body[-1].bias.detach().clone()
    assert not torch.equal(trained, seen[0])  # one Adam step moved it
    trainer.save_checkpoint(tmp_path / "one_step.ckpt")
    fit(2, str(tmp_path / "one_step.ckpt"))
    assert torch.equal(seen[1], trained)
    with pytest.raises(GenlabError, match="bias per pixel"):
        instantiate(train_config("model=vae_conv").model).decoder.init_output_bias(mean.view(1, 28, 28))


@pytest.mark.parametrize("model_name", ["vae", "vae_conv"])
def test_short_run_learns(train_config, tmp_path: Path, model_name: str) -> None:
    """A few epochs on the bundled MNIST images lower val/elbo well below where it started and
    below a trivial baseline: independent per-pixel Bernoulli with the training mean."""
    cfg = train_config(
        f"model={model_name}", "data.source=bundled", "data.batch_size=64",
        "trainer.max_epochs=3", "trainer.num_sanity_val_steps=0",
        "logger=csv", "test=true", "model.nll_samples=10",  # test/nll's 100 samples took the conv VAE 18 s
    )
    metrics = train(cfg)
    rows = read_csv(tmp_path / "metrics.csv")
    val = epoch_values(rows, "val/elbo")
    assert len(val) == 3 and val[-1] < val[0] < 545  # 784 * log 2 = 543.4 nats: a uniform guess

    dm = MNISTDataModule(root=str(tmp_path), source="bundled", seed=cfg.seed)
    dm.setup()
    train_x = dm._splits["train"].images.float() / 255
    p = train_x.mean(0).clamp(1e-4, 1 - 1e-4)
    val_x = dm._splits["val"].images.float() / 255
    baseline = -(val_x * p.log() + (1 - val_x) * (1 - p).log()).flatten(1).sum(1).mean().item()
    assert metrics["val/elbo"] < baseline, (metrics["val/elbo"], baseline)
    assert metrics["test/elbo"] < baseline
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "samples" / "samples_epoch002.png").is_file()
    assert (tmp_path / "samples" / "reconstructions_epoch002.png").is_file()


def test_checkpoint_resumes(train_config, tmp_path: Path) -> None:
    common = ["data.source=bundled", "trainer.limit_train_batches=10", "trainer.limit_val_batches=1",
              "trainer.num_sanity_val_steps=0", "logger=csv", "test=false"]
    first = train_config(*common, "trainer.max_epochs=1")
    train(first)
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0 and state["global_step"] == 10
    assert state["genlab"]["config"]["model"]["latent_dim"] == 32
    assert state["genlab"]["data_info"]["sources"]["train"] == "bundled"

    resumed = train_config(*common, "trainer.max_epochs=3", f"ckpt_path={last}")
    train(resumed)
    after = torch.load(last, map_location="cpu", weights_only=True)
    assert after["epoch"] == 2 and after["global_step"] == 30  # epochs and steps continue
    # Adam's step count continued from the checkpoint: the optimizer state was restored
    adam_steps = {int(s["step"]) for s in after["optimizer_states"][0]["state"].values()}
    assert adam_steps == {30}
    rows = read_csv(tmp_path / "metrics.csv")
    assert sorted({int(r["epoch"]) for r in rows if r.get("val/elbo")}) == [1, 2]


@pytest.mark.parametrize("conditional", [False, True], ids=["vae", "conditional_vae"])
def test_iwae_nll_is_below_negative_elbo_and_tightens_with_k(train_config, conditional: bool) -> None:
    """The same for the conditional VAE's bounds on -log p(x|y), with a prior p(z|y) away from N(0, I)."""
    torch.manual_seed(0)
    extra = ["model.conditional=true", "model.num_classes=10"] if conditional else []
    model = instantiate(train_config("model=vae", *extra).model)
    dm = MNISTDataModule(root="unused", source="bundled")
    dm.setup()
    x = dm._splits["test"].images[:500].float() / 255
    y = dm._splits["test"].labels[:500] if conditional else None
    if conditional:
        with torch.no_grad():
            model.prior_mean.weight.normal_(0, 0.5)
            model.prior_logvar.weight.normal_(0, 0.3)
    with torch.no_grad():
        log_px, kl = model.elbo_terms(x, y)
        neg_elbo = (kl - log_px).mean().item()
        nll = {k: model.iwae_nll(x, k, chunk=100, labels=y).mean().item() for k in (1, 20, 400)}
    assert nll[1] == pytest.approx(neg_elbo, abs=1.0)  # k = 1 is the ELBO (one sample)
    assert nll[400] < nll[20] < nll[1]
    assert nll[400] < neg_elbo


def test_test_nll_is_logged(train_config) -> None:
    metrics = train(train_config("debug=fast", "data.source=bundled", "logger=csv", "model.nll_samples=10"))
    assert 0 < metrics["test/nll"] <= metrics["test/elbo"] + 1.0


def test_adam_runs_its_fused_kernel_unless_told_otherwise(train_config) -> None:
    from functools import partial

    from genlab.models.base import make_optimizer

    model = instantiate(train_config("model=vae").model)
    assert model.configure_optimizers().defaults["fused"] is True
    off = instantiate(train_config("model=vae", "+model.optimizer.fused=false").model)
    assert off.configure_optimizers().defaults["fused"] is False
    assert not make_optimizer(partial(torch.optim.SGD, lr=0.1), model.parameters()).defaults.get("fused")
    assert not make_optimizer(partial(torch.optim.Adam), model.parameters(), fuse=False).defaults["fused"]
    # the fused kernel computes the same update as the loop over tensors
    torch.manual_seed(0)
    nets = [torch.nn.Linear(8, 4) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [make_optimizer(partial(torch.optim.Adam, lr=1e-2), nets[0].parameters()),
            torch.optim.Adam(nets[1].parameters(), lr=1e-2)]
    assert opts[0].defaults["fused"] and not opts[1].defaults["fused"]
    for _ in range(5):
        x = torch.randn(16, 8)
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


class RecordFused(Callback):
    """Whether each optimizer of the run is fused (``+callbacks.fused._target_=test_vae.RecordFused``)."""

    seen: list[bool] = []

    def on_train_start(self, trainer, pl_module) -> None:
        RecordFused.seen = [bool(opt.defaults.get("fused")) for opt in trainer.optimizers]


@pytest.mark.parametrize(
    ("overrides", "fused"),
    [
        (["trainer.precision=bf16-mixed"], [True]),
        (["trainer.precision=bf16-mixed", "+trainer.gradient_clip_val=1.0"], [False]),
        (["model=dcgan", "trainer.precision=bf16-mixed", "model.grad_clip=1.0"], [False, False]),
        (["model=dcgan", "model.grad_clip=1.0"], [True, True]),  # 32-true: Lightning clips fused optimizers
    ],
    ids=["bf16", "bf16-clip", "gan-bf16-clip", "gan-32-clip"],
)
def test_clipped_gradients_under_mixed_precision_train(train_config, overrides: list[str], fused: list[bool]) -> None:
    """Lightning's mixed-precision plugin refuses to clip the gradients of a fused optimizer,
    with or without a grad scaler: there genlab builds the plain one, elsewhere the fused one."""
    RecordFused.seen = []
    metrics = train(train_config(*overrides, "debug=fast", "data.source=bundled", "logger=csv", "test=false",
                                 "callbacks=none", "+callbacks.fused._target_=test_vae.RecordFused",
                                 # bf16 convolutions are slow on CPUs without bf16 units: small batches
                                 "data.batch_size=32", "data.eval_batch_size=64", "trainer.limit_train_batches=2",
                                 "trainer.limit_val_batches=1"))
    assert RecordFused.seen == fused
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("train/"))


def test_callbacks_none_writes_no_checkpoints(train_config, tmp_path: Path, monkeypatch) -> None:
    """Without a ModelCheckpoint in the callbacks group, Lightning adds none of its own. The run
    records where its start-up went (a fresh clock, as in a new process)."""
    import json

    from genlab.utils import startup

    monkeypatch.setattr(startup, "_MARKS", [])
    monkeypatch.setattr(startup, "_DONE", False)
    train(train_config("data.source=bundled", "callbacks=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                       "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "logger=csv", "test=false"))
    assert (tmp_path / "metrics.csv").is_file()
    assert not list(tmp_path.rglob("*.ckpt"))
    phases = json.loads((tmp_path / "run_info.json").read_text())["startup"]
    assert list(phases)[-3:] == ["data setup", "fit start, sanity check", "total"]
    assert all(v >= 0 for v in phases.values()) and phases["total"] > 0
    assert sum(v for k, v in phases.items() if k != "total") == pytest.approx(phases["total"], abs=0.01)




def test_test_nll_covers_the_first_nll_examples(train_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """``nll_examples``: the importance-weighted bound over the first N test examples only (train.py's
    test after a short fit stays short); ``None`` (eval.py): every example."""
    model = instantiate(train_config("model.nll_examples=5", "model.nll_samples=2").model)
    bounded = []
    monkeypatch.setattr(type(model), "iwae_nll",
                        lambda self, x, k, chunk, labels=None: bounded.append(len(x)) or torch.zeros(len(x)))
    batches = [(torch.rand(3, 1, 28, 28), None) for _ in range(4)]
    for nll_examples, expected in ((5, [3, 2]), (None, [3, 3, 3, 3])):
        model.nll_examples, bounded[:] = nll_examples, []
        model.on_test_epoch_start()
        for i, batch in enumerate(batches):
            model.test_step(batch, i)
        assert bounded == expected


def test_eval_paces_many_importance_samples_into_smaller_batches() -> None:
    """``eval.py nll_samples=5000``: test batches 50x smaller, 50x more samples per decoding pass
    (the same memory), so the progress bar moves as with 100 samples; a batch size given wins."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from genlab.eval import paced_batches

    model = SimpleNamespace(nll_samples=5000, nll_chunk=25)
    run_data = OmegaConf.create({"batch_size": 128, "eval_batch_size": 1000})
    assert paced_batches(model, run_data, OmegaConf.create({})) == {"eval_batch_size": 20}
    assert model.nll_chunk == 1250
    assert paced_batches(SimpleNamespace(nll_samples=5000, nll_chunk=25), run_data,
                         OmegaConf.create({"eval_batch_size": 500})) == {}
    assert paced_batches(SimpleNamespace(nll_samples=100, nll_chunk=25), run_data, OmegaConf.create({})) == {}

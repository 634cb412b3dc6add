"""Text models: short real runs that learn, free bits against collapse, generation from checkpoints."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from genlab.train import train
from genlab.utils.wandb_setup import finish
from test_cli import run
from test_vae import epoch_values, read_csv
from wandb_records import summarize

SMALL = ["data=text", "data.max_examples=3000", "data.max_len=12", "data.batch_size=32",
         "trainer.max_epochs=3", "trainer.num_sanity_val_steps=0", "logger=csv",
         "callbacks.text_samples.num_samples=100"]
NETS = ["model.decoder.embed_dim=64", "model.decoder.hidden_dim=128"]


def unigram_ppl(dm) -> float:
    """Perplexity on the validation split of token frequencies from the training split (add-one)."""
    train_counts = Counter(t for s in dm.token_lists("train") for t in s + [2])
    total, vocab = sum(train_counts.values()), len(dm.tokenizer)
    val = [t for s in dm.token_lists("val") for t in s + [2]]
    return math.exp(-sum(math.log((train_counts[t] + 1) / (total + vocab)) for t in val) / len(val))


def test_language_model_learns_beyond_unigrams(train_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = train_config("model=text_lm", *SMALL, *NETS, "logger=default")  # W&B offline + CSV
    metrics = train(cfg)
    rows = read_csv(tmp_path / "metrics.csv")
    val = epoch_values(rows, "val/nll")
    assert len(val) == 3 and val[-1] < val[0]
    # the per-step values, computed only on the steps that are written: a token's nll, in nats
    loss, token_nll = epoch_values(rows, "train/loss"), epoch_values(rows, "train/nll_token")
    assert len(token_nll) == len(loss) >= 2 and all(0 < t < 12 for t in token_nll)
    dm = instantiate(cfg.data)
    assert metrics["val/ppl"] < unigram_ppl(dm)
    assert 0 <= metrics["val/self_bleu4"] <= 1 and metrics["val/bleu2"] > 0
    texts = (tmp_path / "samples" / "text_epoch002.txt").read_text().splitlines()
    assert len(texts) == 20 and all(line.startswith("sample\t") for line in texts)
    # the W&B run holds the vocabulary size in its config, BLEU curves and a table of samples per epoch
    finish()  # as train.py's task wrapper does
    run_file = next((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    for _ in range(60):  # W&B's service writes the file in the background: wait for its last record
        try:
            summary = summarize(run_file)
        except Exception:  # a record caught half-written
            summary = {"config": {}, "exited": False}
        if summary["exited"]:
            break
        time.sleep(1)
    assert summary["config"]["model"]["decoder"]["vocab_size"] == len(dm.tokenizer) and summary["config"]["data_info"]["tokenizer"] == "word"
    assert {"val/ppl", "val/bleu4", "val/self_bleu4", "val/text_samples/_type"} <= set(summary["history"])
    tables = list((run_file.parent / "files" / "media" / "table").rglob("*.table.json"))
    assert len(tables) == 3  # one per validation epoch


def test_text_vae_with_free_bits_learns_and_keeps_kl(train_config, tmp_path: Path) -> None:
    cfg = train_config("model=text_vae", *SMALL, *NETS, "model.encoder.hidden_dim=128", "model.latent_dim=16",
                       "model.kl_warmup_steps=100", "model.free_bits=0.25", "model.nll_samples=4")
    metrics = train(cfg)
    val = epoch_values(read_csv(tmp_path / "metrics.csv"), "val/elbo")
    assert len(val) == 3 and val[-1] < val[0]
    assert metrics["val/kl"] > 1.0 and metrics["val/active_units"] >= 1  # not collapsed
    assert metrics["test/nll"] <= metrics["test/elbo"] + 0.5 and metrics["test/ppl_iw"] <= metrics["test/ppl"] * 1.01
    rows = (tmp_path / "samples" / "text_epoch002.txt").read_text().splitlines()
    assert sum(r.startswith("reconstruction\t") for r in rows) == 8


def test_text_gan_trains_its_autoencoder_and_samples(train_config, tmp_path: Path) -> None:
    cfg = train_config("model=text_gan", *SMALL, *NETS, "model.encoder.hidden_dim=128", "model.n_critic=2")
    metrics = train(cfg)
    rows = read_csv(tmp_path / "metrics.csv")
    val = epoch_values(rows, "val/recon")
    assert len(val) == 3 and val[-1] < val[0]
    logged = {key: epoch_values(rows, f"train/{key}") for key in ("d_loss", "d_real", "e_loss", "recon", "recon_token")}
    assert len({len(v) for v in logged.values()}) == 1 and len(logged["recon"]) >= 2  # all on the same steps
    assert all(math.isfinite(v) for v in logged["d_real"]) and all(0 < t < 12 for t in logged["recon_token"])
    assert {"val/d_real", "val/d_fake", "val/bleu4", "val/self_bleu4", "test/recon_ppl"} <= set(metrics)
    model = instantiate(cfg.model)
    ids = model.generate(model.sample_latents(5), temperature=0.7, top_k=10)
    assert ids.shape[0] == 5 and ids.dtype == torch.long


def test_samplers_temperature_top_k_and_greedy(train_config) -> None:
    cfg = train_config("model=text_lm", "data=text", "model.decoder.vocab_size=30", "data.max_len=8")
    model = instantiate(cfg.model).eval()
    z = model.sample_latents(64)
    greedy = model.generate(z, greedy=True)
    assert (greedy == greedy[0]).all()  # no latent: one most likely sentence
    torch.manual_seed(0)
    top1 = model.generate(z, top_k=1)
    assert torch.equal(top1, greedy)  # top-1 sampling is greedy decoding
    assert model.generate(z, temperature=5.0).unique(dim=0).shape[0] > 1


def sentences(stdout: str) -> list[str]:
    """Printed sentences, without the log lines."""
    return [line for line in stdout.splitlines() if line.strip() and not line.startswith("[")]


@pytest.mark.slow
def test_generate_prints_sentences_and_interpolates(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run("train.py", "model=text_vae", "debug=fast", "data=text", "data.max_examples=2000", "test=false",
               f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "checkpoints" / "last.ckpt"
    proc = run("generate.py", f"ckpt_path={ckpt}", "num_samples=5", "temperature=0.7",
               f"hydra.run.dir={tmp_path}/g1", env={"GENLAB_ROOT": str(tmp_path)})  # no corpus needed
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = sentences(proc.stdout)
    assert len(printed) == 5 and all(any(c.isalpha() for c in line) for line in printed)
    assert (out / "generated" / "samples_5.txt").read_text().splitlines() == printed
    proc = run("generate.py", f"ckpt_path={ckpt}", "mode=interpolate", "steps=6", "greedy=true",
               "sentences=[to be or not to be,good night sweet prince]", f"hydra.run.dir={tmp_path}/g2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(sentences(proc.stdout)) == 6


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_nets_shapes_and_likelihood(cell: str) -> None:
    from genlab.nets.text import RNNDecoder, RNNEncoder

    x = torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]])
    enc = RNNEncoder(vocab_size=10, latent_dim=3, embed_dim=8, hidden_dim=16, cell=cell, num_layers=2)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (2, 3)
    # padding does not change a sentence's code
    assert torch.allclose(enc(x[1:, :2])[0], mu[1:], atol=1e-6)
    dec = RNNDecoder(vocab_size=10, latent_dim=3, embed_dim=8, hidden_dim=16, cell=cell, num_layers=2,
                     z_every_step=True, max_len=6).eval()
    log_px = dec.log_prob(x, mu)
    assert log_px.shape == (2,) and (log_px < 0).all()
    # the likelihood sums the per-token log-probabilities of the sentence and <eos>, not the padding
    assert torch.allclose(dec.log_prob(x[1:, :2], mu[1:]), log_px[1:], atol=1e-5)
    assert torch.equal(dec.units(x), torch.tensor([4, 2]))
    assert dec.generate(mu, greedy=True).shape == (2, 6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_decoder_nll_on_the_tokens_alone_matches_every_position(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the output layer runs on the sentences' tokens only; the loss and the gradients
    are those of the whole padded batch, and the logits of ``at`` are those positions' logits."""
    from genlab.nets.text import RNNDecoder

    torch.manual_seed(0)
    x = torch.tensor([[5, 6, 7, 8, 2], [9, 2, 0, 0, 0], [4, 4, 2, 0, 0]])
    z = torch.randn(3, 4)
    dec = RNNDecoder(vocab_size=12, latent_dim=4, embed_dim=8, hidden_dim=16, cell=cell, z_every_step=True)
    tokens = x != 0
    assert torch.allclose(dec(x, z, at=tokens), dec(x, z)[tokens], atol=1e-6)
    grads = []
    for nll in (dec.nll, dec.nll_every_position):
        dec.zero_grad()
        value = nll(x, z)
        value.sum().backward()
        grads.append((value.detach(), [p.grad.clone() for p in dec.parameters()]))
    (a, grad_a), (b, grad_b) = grads
    assert a.shape == (3,) and torch.allclose(a, b, atol=1e-5)
    assert all(torch.allclose(g, h, atol=1e-6) for g, h in zip(grad_a, grad_b))
    # evaluation (no gradients) takes the logits a slice of tokens at a time: here 2 of the 9
    import genlab.nets.text

    monkeypatch.setattr(genlab.nets.text, "EVAL_LOGITS", 2 * 12)
    with torch.no_grad():
        assert torch.allclose(dec.nll(x, z), b, atol=1e-5)

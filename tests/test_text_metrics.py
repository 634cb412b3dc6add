"""Text metrics: BLEU and self-BLEU equal NLTK's, KL schedules, active units."""

from __future__ import annotations

import random

import pytest
import torch

from genlab.metrics.latent import active_units
from genlab.metrics.text_quality import References, bleu, quality_diversity, self_bleu, to_sentences
from genlab.models.kl_schedules import kl_weight
from conftest import load_script


def _sentences(n: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randrange(0, 12))] for _ in range(n)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_bleu_and_self_bleu_equal_nltk(n: int) -> None:
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    smooth, weights = nltk_bleu.SmoothingFunction().method1, (1 / n,) * n
    refs, hyps = _sentences(80, 15, 0), _sentences(50, 15, 1)
    hyps += [refs[0], [], refs[1][:1], refs[2] + refs[3]]  # exact copy, empty, too short, longer
    expected = sum(nltk_bleu.sentence_bleu(refs, h, weights, smooth) for h in hyps) / len(hyps)
    assert bleu(hyps, refs, n) == pytest.approx(expected, abs=1e-12)
    expected = nltk_bleu.corpus_bleu([refs] * len(hyps), hyps, weights, smooth)
    assert bleu(hyps, refs, n, corpus=True) == pytest.approx(expected, abs=1e-12)
    hyps += [hyps[0]]  # a duplicate: its twin is a reference for it
    expected = sum(nltk_bleu.sentence_bleu(hyps[:i] + hyps[i + 1:], h, weights, smooth) for i, h in enumerate(hyps)) / len(hyps)
    assert self_bleu(hyps, n) == pytest.approx(expected, abs=1e-12)


def test_bleu_extremes() -> None:
    refs = [[1, 2, 3, 4, 5], [6, 7, 8, 9]]
    assert bleu(refs, refs, 4) == pytest.approx(1.0)
    assert bleu([[10, 11, 12]], refs, 4) == 0.0
    assert self_bleu([[1, 2, 3, 4, 5]] * 3, 4) == pytest.approx(1.0)  # identical samples: no diversity
    scores = quality_diversity(refs, References(refs))
    assert set(scores) == {"bleu2", "bleu3", "bleu4", "self_bleu2", "self_bleu3", "self_bleu4"}


def test_to_sentences_stops_at_eos() -> None:
    assert to_sentences(torch.tensor([[5, 6, 2, 7, 0], [4, 0, 0, 0, 0]])) == [[5, 6], [4]]


def test_kl_schedules() -> None:
    assert [kl_weight("linear", s, 100) for s in (0, 50, 100, 500)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_weight("sigmoid", 50, 100) == pytest.approx(0.5) and kl_weight("sigmoid", 0, 100) < 0.01
    # 4 cycles of 25 steps, each rising over its first half
    assert [kl_weight("cyclical", s, 100) for s in (0, 6, 12, 13, 24, 25, 31)] == pytest.approx(
        [0.0, 0.48, 0.96, 1.0, 1.0, 0.0, 0.48])
    assert kl_weight("constant", 0, 100) == 1.0


def test_active_units_counts_dimensions_that_vary() -> None:
    means = torch.zeros(100, 4)
    means[:, 0] = torch.randn(100)          # used
    means[:, 1] = 0.01 * torch.randn(100)   # variance 1e-4: inactive
    assert active_units(means) == 1


def test_temperature_sweep_names_each_curve_once() -> None:
    """scripts/text_temperature_sweep.py names a curve by its run folder, and by run and file where
    two checkpoints come from one run, so that no two curves merge; a checkpoint given twice is refused."""
    sweep = load_script("text_temperature_sweep")
    assert sweep.curve_names(["o/text_lm/checkpoints/last.ckpt", "o/text_vae/checkpoints/last.ckpt"]) == ["text_lm", "text_vae"]
    assert sweep.curve_names(["o/text_lm/checkpoints/best.ckpt", "o/text_lm/checkpoints/last.ckpt", "o/gan/last.ckpt"]) == [
        "text_lm/best", "text_lm/last", "gan"]
    with pytest.raises(SystemExit):
        sweep.curve_names(["o/lm/checkpoints/last.ckpt", "o/lm/checkpoints/last.ckpt"])

"""BLEU of generated sentences against a reference set, and self-BLEU among them
(the quality and diversity measures of text-GAN papers; Zhu et al. 2018, Caccia et al. 2018).

``bleu``: mean over samples of each sample's smoothed sentence BLEU-n with *all* references as
its references; ``self_bleu``: the same with the other samples as references. Both equal NLTK's
``sentence_bleu(..., weights=(1/n,)*n, smoothing_function=SmoothingFunction().method1)`` averaged
over samples (``corpus=True``: NLTK's ``corpus_bleu``), which genlab's tests check, but they run
in a fraction of the time: each n-gram's maximum count over the references is computed once.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Any, Iterable, Sequence

import torch

from genlab.data.tokenizers import EOS, PAD

Sentence = Sequence[int]
EPSILON = 0.1  # NLTK's SmoothingFunction().method1: a zero n-gram match count becomes 0.1


def _ngrams(sentence: Sentence, n: int) -> Counter:
    return Counter(zip(*(sentence[i:] for i in range(n)))) if len(sentence) >= n else Counter()


class References:
    """The references of BLEU, indexed once: for each n-gram its largest count in any reference
    (and the runner-up, so a reference can leave itself out, as self-BLEU needs)."""

    def __init__(self, sentences: Iterable[Sentence], max_n: int = 4) -> None:
        self.sentences = [tuple(s) for s in sentences]
        self.max_n = max_n
        # per order: n-gram -> [highest count, how many references have it, second highest]
        self.tops: list[dict[tuple, list[int]]] = [{} for _ in range(max_n + 1)]
        for sentence in self.sentences:
            for n in range(1, max_n + 1):
                table = self.tops[n]
                for gram, c in _ngrams(sentence, n).items():
                    top = table.get(gram)
                    if top is None:
                        table[gram] = [c, 1, 0]
                    elif c > top[0]:
                        top[:] = [c, 1, top[0]]
                    elif c == top[0]:
                        top[1] += 1
                    elif c > top[2]:
                        top[2] = c
        self.length_counts = Counter(len(s) for s in self.sentences)
        self.lengths = sorted(self.length_counts)

    def max_count(self, gram: tuple, n: int, own: int = 0) -> int:
        """Largest count of ``gram`` in a reference; with ``own`` > 0, in a reference other than
        the one sentence holding it ``own`` times."""
        top = self.tops[n].get(gram)
        if top is None:
            return 0
        if own == top[0] and top[1] == 1:
            return top[2]
        return top[0]

    def closest_length(self, hyp_len: int, exclude: int | None = None) -> int:
        """The reference length closest to ``hyp_len`` (the shorter on a tie), as NLTK picks it;
        ``exclude`` leaves one reference of that length out."""
        lengths = self.lengths
        if exclude is not None and self.length_counts[exclude] == 1:
            lengths = [n for n in lengths if n != exclude]
        i = bisect.bisect_left(lengths, hyp_len)
        candidates = lengths[max(0, i - 1) : i + 1]
        return min(candidates, key=lambda r: (abs(r - hyp_len), r))


def _stats(hyp: Sentence, refs: References, n_max: int, leave_out: bool) -> tuple[list[int], list[int], int]:
    """Clipped matches and n-gram counts per order 1..n_max, and the closest reference length."""
    hyp = tuple(hyp)
    matches, totals = [], []
    for n in range(1, n_max + 1):
        counts = _ngrams(hyp, n)
        matches.append(sum(min(c, refs.max_count(g, n, c if leave_out else 0)) for g, c in counts.items()))
        totals.append(max(1, sum(counts.values())))
    ref_len = refs.closest_length(len(hyp), len(hyp) if leave_out else None)
    return matches, totals, ref_len


def _score(matches: Sequence[int], totals: Sequence[int], hyp_len: int, ref_len: int) -> float:
    """Smoothed (method1) BLEU with uniform weights from the n-gram statistics."""
    if matches[0] == 0:
        return 0.0
    if hyp_len > ref_len:
        bp = 1.0
    elif hyp_len == 0:
        bp = 0.0
    else:
        bp = math.exp(1 - ref_len / hyp_len)
    n = len(matches)
    logs = [math.log((m if m > 0 else EPSILON) / t) for m, t in zip(matches, totals)]
    return bp * math.exp(math.fsum(lg / n for lg in logs))


def bleu(hypotheses: Sequence[Sentence], references: References | Sequence[Sentence], n: int = 4,
         corpus: bool = False) -> float:
    """BLEU-``n`` of ``hypotheses`` with every reference serving every hypothesis: the mean of
    sentence BLEU, or with ``corpus=True`` the corpus BLEU (summed statistics)."""
    refs = references if isinstance(references, References) else References(references, n)
    return _bleu(hypotheses, refs, n, corpus, leave_out=False)


def self_bleu(samples: Sequence[Sentence], n: int = 4, corpus: bool = False,
              references: References | None = None) -> float:
    """Self-BLEU-``n``: each sample scored against all the other samples (higher = less diverse)."""
    if len(samples) < 2:
        return 0.0
    refs = references or References(samples, n)
    return _bleu(samples, refs, n, corpus, leave_out=True)


def _bleu(hypotheses: Sequence[Sentence], refs: References, n: int, corpus: bool, leave_out: bool) -> float:
    if n > refs.max_n:
        raise ValueError(f"BLEU-{n} needs references indexed up to {n}-grams (they have {refs.max_n}).")
    if not hypotheses:
        return 0.0
    stats = [_stats(h, refs, n, leave_out) for h in hypotheses]
    if corpus:
        matches = [sum(s[0][i] for s in stats) for i in range(n)]
        totals = [sum(s[1][i] for s in stats) for i in range(n)]
        hyp_len, ref_len = sum(len(h) for h in hypotheses), sum(s[2] for s in stats)
        return _score(matches, totals, hyp_len, ref_len)
    return math.fsum(_score(m, t, len(h), r) for h, (m, t, r) in zip(hypotheses, stats)) / len(hypotheses)


def quality_diversity(samples: Sequence[Sentence], references: References, orders: Sequence[int] = (2, 3, 4)) -> dict[str, float]:
    """``bleu{n}`` against the references and ``self_bleu{n}`` among the samples, per order."""
    own = References(samples, max(orders))
    metrics: dict[str, float] = {}
    for n in orders:
        metrics[f"bleu{n}"] = bleu(samples, references, n)
    for n in orders:
        metrics[f"self_bleu{n}"] = self_bleu(samples, n, references=own)
    return metrics


# ----------------------------------------------------------------- drawing samples
def to_sentences(ids: torch.Tensor) -> list[list[int]]:
    """Token-id rows to lists of tokens before ``<eos>`` (padding dropped)."""
    out = []
    for row in ids.tolist():
        sentence = []
        for i in row:
            if i == EOS:
                break
            if i != PAD:
                sentence.append(i)
        out.append(sentence)
    return out


@torch.no_grad()
def draw_sentences(model: Any, n: int, seed: int = 0, batch_size: int = 500, labels: torch.Tensor | None = None,
                   **sample: Any) -> list[list[int]]:
    """``n`` sentences from a text model's prior, reproducibly: the latents and the token sampling
    both follow ``seed`` (every process draws the same). A conditional model draws each for its
    class in ``labels`` (``model.sample_labels(n)``: every class in turn)."""
    z = model.sample_latents(n, generator=torch.Generator().manual_seed(seed))
    device = model.device
    devices = [device.index or 0] if device.type == "cuda" else []
    parts = [{}] * len(z.split(batch_size)) if labels is None else [{"labels": y} for y in labels.split(batch_size)]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        ids = torch.cat([model.generate(chunk, **part, **sample).cpu() for chunk, part in zip(z.split(batch_size), parts)])
    return to_sentences(ids)

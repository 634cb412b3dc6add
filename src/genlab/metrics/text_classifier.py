"""A bag-of-words classifier of labelled sentences: does a conditional text model write lines of
the class it was asked for?

Multinomial logistic regression (scikit-learn's ``LogisticRegression``) on the token counts of
each sentence, fitted on the training split with class weights that balance the classes. Its
score on generated lines (every class in turn, so the classes are balanced) is read beside its
balanced accuracy on real held-out lines (the mean over classes of the share it gets right): a
model whose lines are as recognisable as real ones reaches the second figure. Only the weights
are kept (``[C, V]`` and ``[C]``), so it is cached as tensors and predicts with one product.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from genlab.data.tokenizers import SPECIALS

Sentence = Sequence[int]


def counts(sentences: Sequence[Sentence], vocab_size: int) -> Any:
    """Token counts ``[N, V]`` as a SciPy sparse matrix; the special tokens are not counted."""
    from scipy.sparse import csr_matrix

    rows = [i for i, s in enumerate(sentences) for t in s if t >= len(SPECIALS)]
    cols = [t for s in sentences for t in s if t >= len(SPECIALS)]
    return csr_matrix(([1.0] * len(rows), (rows, cols)), shape=(len(sentences), vocab_size), dtype="float32")


class BagOfWords:
    """``predict`` the class of sentences (token-id lists) from their token counts."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight.float(), bias.float()  # [C, V], [C]

    @classmethod
    def fit(cls, sentences: Sequence[Sentence], labels: torch.Tensor, vocab_size: int, num_classes: int,
            C: float = 0.5, max_iter: int = 1000) -> BagOfWords:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced")
        model.fit(counts(sentences, vocab_size), labels.numpy())
        weight = np.zeros((num_classes, vocab_size), dtype=np.float32)
        bias = np.full(num_classes, -np.inf, dtype=np.float32)  # a class absent from training is never predicted
        if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: the second's logit
            weight[model.classes_[1]], bias[model.classes_[1]] = model.coef_[0], model.intercept_[0]
            bias[model.classes_[0]] = 0.0
        else:
            weight[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
        return cls(torch.from_numpy(weight), torch.from_numpy(bias))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> BagOfWords:
        return cls(state["weight"], state["bias"])

    def predict(self, sentences: Sequence[Sentence]) -> torch.Tensor:
        """The most likely class of each sentence, ``[N]``."""
        if not len(sentences):
            return torch.zeros(0, dtype=torch.long)
        logits = counts(sentences, self.weight.shape[1]) @ self.weight.T.numpy() + self.bias.numpy()
        return torch.from_numpy(logits).argmax(1)

    def accuracy(self, sentences: Sequence[Sentence], labels: torch.Tensor, balanced: bool = False) -> float:
        """The share of sentences assigned their label; ``balanced``: the mean of that share over
        the classes present (what a class-balanced sample of the same sentences would score)."""
        right = (self.predict(sentences) == labels).float()
        if not balanced:
            return float(right.mean())
        return float(torch.stack([right[labels == c].mean() for c in labels.unique()]).mean())

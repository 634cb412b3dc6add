"""Character and word tokenizers with a vocabulary built from the training split.

Token ids 0-3 are the specials in every vocabulary: ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.
A tokenizer is plain data (``to_dict``/``from_dict``), so it travels inside checkpoints.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Sequence

from genlab.utils.errors import GenlabError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
KINDS = ("char", "word")

# words keep inner apostrophes (told'st, damn'd); punctuation marks are tokens of their own;
# a literal <unk> (as in Penn Treebank) stays one token and maps to the unknown id
WORD_PATTERN = r"<unk>|\w+(?:['’]\w+)*|[^\w\s]"
_WORD = re.compile(WORD_PATTERN)
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?)\]])")


class Tokenizer:
    """Maps text to token ids and back.

    Args:
        kind: ``char`` (every character is a token, spaces included) or ``word`` (words and
            punctuation marks).
        vocab: the tokens, specials first; usually made by ``Tokenizer.build``.
        lowercase: lowercase text before tokenizing.
    """

    def __init__(self, kind: str, vocab: Sequence[str], lowercase: bool = False) -> None:
        if kind not in KINDS:
            raise GenlabError(f"data.tokenizer={kind!r} is unknown; choose one of {', '.join(KINDS)}.")
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise GenlabError(f"a vocabulary must start with the special tokens {SPECIALS}.")
        self.kind, self.lowercase = kind, lowercase
        self.vocab = list(vocab)
        self.index = {token: i for i, token in enumerate(self.vocab)}

    @classmethod
    def build(cls, texts: Iterable[str], kind: str = "word", lowercase: bool = False, min_freq: int = 1,
              max_vocab: int | None = None) -> "Tokenizer":
        """A vocabulary of the tokens seen at least ``min_freq`` times (the ``max_vocab`` most
        frequent, specials included, when set); ties are broken alphabetically so it is
        deterministic."""
        tokenizer = cls(kind, SPECIALS, lowercase)
        return cls.from_tokens((tokenizer.tokenize(text) for text in texts), kind, lowercase, min_freq, max_vocab)

    @classmethod
    def from_tokens(cls, token_lists: Iterable[Sequence[str]], kind: str = "word", lowercase: bool = False,
                    min_freq: int = 1, max_vocab: int | None = None) -> "Tokenizer":
        """``build`` from texts already split by ``tokenize`` (each text is split only once)."""
        counts: Counter = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop("<unk>", None)
        tokens = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_vocab is not None:
            tokens = tokens[: max(0, max_vocab - len(SPECIALS))]
        return cls(kind, [*SPECIALS, *tokens], lowercase)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return list(text) if self.kind == "char" else _WORD.findall(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without ``<bos>``/``<eos>``."""
        return self.ids(self.tokenize(text))

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Token ids of tokens from ``tokenize``; ``<unk>``'s for those out of the vocabulary."""
        get = self.index.get
        return [get(t, UNK) for t in tokens]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``<eos>``, without padding and ``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.vocab[i] if 0 <= i < len(self.vocab) else SPECIALS[UNK])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        tokens = self.tokens(ids)
        if self.kind == "char":
            return "".join(tokens)
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(tokens))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase, "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Tokenizer":
        return cls(state["kind"], state["vocab"], state.get("lowercase", False))

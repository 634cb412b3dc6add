"""Build the Lightning ``Trainer`` arguments from the ``trainer`` config group.

Lightning 2 removed ``Trainer(gpus=...)``; genlab keeps ``trainer.gpus=N`` as the short way
to ask for GPUs and translates it here, in one place.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

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


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


@contextmanager
def cheap_cuda_checks() -> Iterator[bool]:
    """Make torch's "is CUDA available?" cheap for the duration where the machine has no CUDA
    device; yields whether it changed anything.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that the question does
    not initialise CUDA before processes fork. A CUDA build of torch then answers it by loading
    the NVML library each time, and every ``optimizer.step()`` asks it (torch.optim's
    graph-capture check): about 50 us per step on a machine without a GPU, where the failed
    load is retried on every call. With no device there is nothing to initialise, and torch's
    own count, cached after its first call, gives the same answer in about 2 us. Machines with
    a GPU, and processes where CUDA is already initialised, are left as they are.
    """
    before = os.environ.get(NVML_CHECK)
    changed = False
    if before == "1":
        import torch

        changed = torch.backends.cuda.is_built() and not torch.cuda.is_initialized() and torch.cuda.device_count() == 0
    if changed:
        os.environ[NVML_CHECK] = "0"
    try:
        yield changed
    finally:
        if changed:
            os.environ[NVML_CHECK] = before


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_host_memory_on_cpu(trainer: Any, enabled: bool) -> bool:
    """``keep_freed_host_memory`` for a trainer on the CPU when ``enabled`` (the config's
    ``keep_host_memory``); True where it took effect."""
    from pytorch_lightning.accelerators import CPUAccelerator

    return bool(enabled) and isinstance(trainer.accelerator, CPUAccelerator) and keep_freed_host_memory()


def keep_freed_host_memory() -> bool:
    """Have the C library's ``malloc`` keep the host memory a training step frees for the next
    step, instead of handing it back to the operating system; True where it took effect (glibc).

    PyTorch allocates CPU tensors with ``malloc``. glibc serves a block over its mmap threshold
    (at most 32 MB) with a fresh ``mmap`` and unmaps it when freed, and trims the top of its heap
    once enough of it is free, so a step whose activations are large (a language model's logits
    over a vocabulary, DCGAN or the conv VAE at batch 512) faults in and zeroes new pages for them
    at every step: 26,000-91,000 page faults and 55-200 ms of kernel time per step of these models
    on a 2-core CPU (``python scripts/host_memory.py``; they train 1.2-1.34x as fast without).
    With mmap off (``M_MMAP_MAX=0``) and trimming only past 1 GiB free, freed blocks are reused
    from the heap. The process keeps the memory it freed instead of returning it between steps
    (the default experiment's peak RSS: about +15%). It lasts for the rest of the process, as the
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` environment variables would; the GPU's
    memory has its own caching allocator and is not concerned."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not a C library with mallopt (e.g. Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1

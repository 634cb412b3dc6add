"""KL-weight schedules for VAEs: how the weight of the KL term grows from 0 to 1 over training.

``linear``: straight ramp over ``steps`` (Bowman et al. 2016 use a schedule of this family);
``sigmoid``: the logistic ramp of Bowman et al., centred at ``steps / 2``; ``cyclical``: Fu et al.
2019, ``cycles`` repeated ramps over ``steps``, each rising during the first ``ratio`` of its cycle
and then held at 1; ``constant``: 1 throughout. After ``steps`` every schedule stays at 1.
"""

from __future__ import annotations

import math

from genlab.utils.errors import GenlabError

SCHEDULES = ("linear", "sigmoid", "cyclical", "constant")


def check_schedule(name: str) -> str:
    if name not in SCHEDULES:
        raise GenlabError(f"model.kl_schedule={name!r} is unknown; choose one of {', '.join(SCHEDULES)}.")
    return name


def kl_weight(schedule: str, step: int, steps: int, cycles: int = 4, ratio: float = 0.5) -> float:
    """The KL weight in [0, 1] at optimizer step ``step``."""
    if schedule == "constant" or steps <= 0 or step >= steps:
        return 1.0
    progress = step / steps
    if schedule == "linear":
        return progress
    if schedule == "sigmoid":
        return 1.0 / (1.0 + math.exp(-10.0 * (progress - 0.5)))
    period = steps / max(1, cycles)
    return min(1.0, (step % period) / (period * ratio)) if ratio > 0 else 1.0

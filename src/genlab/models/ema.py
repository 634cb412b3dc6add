"""An exponential moving average of a net whose update never waits for the GPU."""

from __future__ import annotations

from itertools import chain

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA(AveragedModel):
    """torch's ``AveragedModel`` with ``get_ema_multi_avg_fn(decay)`` over parameters and buffers,
    the same update and state (``n_averaged`` included), with the count of updates mirrored on
    the host: torch's ``update_parameters`` reads ``n_averaged`` from the device twice per call,
    each read a wait for the GPU's queued work. The mirror is read from the device once, at the
    first update after construction or a ``load_state_dict``."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self._updates: int | None = None
        self.register_load_state_dict_post_hook(EMA._forget_count)

    @staticmethod
    def _forget_count(module: EMA, incompatible_keys) -> None:
        module._updates = None

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._updates is None:
            self._updates = int(self.n_averaged)
        mine = [t.detach() for t in chain(self.module.parameters(), self.module.buffers())]
        theirs = [t.detach().to(m.device) for m, t in zip(mine, chain(model.parameters(), model.buffers()))]
        if self._updates == 0:
            for m, t in zip(mine, theirs):
                m.copy_(t)
        else:
            groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
            for m, t in zip(mine, theirs):
                group = groups.setdefault((m.device, m.dtype), ([], []))
                group[0].append(m)
                group[1].append(t)
            for (device, _), (m, t) in groups.items():
                self.multi_avg_fn(m, t, self.n_averaged.to(device))
        self.n_averaged += 1
        self._updates += 1

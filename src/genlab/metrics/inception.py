"""Standard Inception FID, for when its weights are on disk (never downloaded by genlab).

torchmetrics computes it through torch-fidelity's InceptionV3 (``pip install genlab[inception]``)
from the file given as ``metrics.inception_weights`` or already in the torch hub cache
(``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``, where torch-fidelity
puts it after a download on a machine with internet).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from genlab.utils.errors import GenlabError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"


def find_weights(path: str | None) -> Path | None:
    """The Inception weights to use: ``path`` (must exist), else the torch hub cache, else None."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise GenlabError(f"metrics.inception_weights={path!r}: no such file. Give the path of "
                              f"{WEIGHTS_NAME} (torch-fidelity's InceptionV3 weights).")
        return p
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME
    return cached if cached.is_file() else None


def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights: Path, batch_size: int = 100) -> float:
    """FID with the standard 2048-d InceptionV3 pool features; images in [0, 1], 1 or 3 channels."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(weights))
    except (ModuleNotFoundError, ImportError) as e:
        raise GenlabError(f"Inception FID needs torch-fidelity ({e}); install it with: pip install -e \".[inception]\"") from e
    except Exception as e:  # a damaged or wrong weights file
        raise GenlabError(f"cannot load Inception weights from {weights}: {e}") from e
    for images, is_real in ((real, True), (fake, False)):
        for batch in images.split(batch_size):
            fid.update(batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch, real=is_real)
    return fid.compute().item()

"""Writing a sample grid as PNG: ``torchvision.utils.save_image`` (RGB) against genlab's
``save_grid`` (greyscale for one-channel images): milliseconds per grid and file size.

    python scripts/sample_grid_png.py [--repeats 20] [--grid samples/samples_epoch002.png ...]

By default the images are 64 of the bundled MNIST digits, gridded 8 per row as the sample
callback does. ``--grid`` takes grids a run wrote instead (e.g. a young model's blurry samples,
which compress worse than digits) and times writing their pixels both ways.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from genlab.data.image_sources import load_bundled
from genlab.utils.images import save_grid


def compare(label: str, images: torch.Tensor, nrow: int, repeats: int) -> None:
    """Time both writers on ``images`` ``[N, 1, H, W]`` in [0, 1], interleaved (``make_grid``
    returns a single image as it is, without padding)."""
    writers = {
        "save_image (RGB)": lambda path: save_image(make_grid(images, nrow=nrow, padding=2, pad_value=1.0), path),
        "save_grid (grey)": lambda path: save_grid(images, path, nrow=nrow),
    }
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list[float]] = {name: [] for name in writers}
        for i in range(repeats):
            for k, (name, write) in enumerate(writers.items()):
                start = time.perf_counter()
                write(Path(tmp) / f"{i}_{k}.png")
                times[name].append(time.perf_counter() - start)
        modes, sizes, pixels = {}, {}, []
        for k, name in enumerate(writers):
            path = Path(tmp) / f"0_{k}.png"
            sizes[name] = path.stat().st_size
            with Image.open(path) as picture:
                modes[name] = picture.mode
                pixels.append(np.asarray(picture.convert("L")))
    print(f"{label}; {repeats} writes each, interleaved; same grey values: {np.array_equal(*pixels)}")
    for name, t in times.items():
        print(f"  {name:18s} {1000 * statistics.median(t):6.1f} ms per grid (min {1000 * min(t):.1f}), "
              f"{sizes[name]:7d} bytes, mode {modes[name]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--grid", type=Path, nargs="*", default=[], help="grey PNG grids a run wrote")
    args = parser.parse_args()
    images, _ = load_bundled()
    compare("64 MNIST digits, 8 per row", images[:64].unsqueeze(1).float() / 255, 8, args.repeats)
    for path in args.grid:
        with Image.open(path) as picture:
            pixels = torch.from_numpy(np.array(picture.convert("L"))).float().div(255)
        compare(f"{path} ({pixels.shape[1]}x{pixels.shape[0]})", pixels[None, None], 1, args.repeats)


if __name__ == "__main__":
    main()

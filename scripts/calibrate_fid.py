"""What does a given FID mean? The sample-quality metrics between real image sets, and with the
compared set corrupted (noise, blur, a checkerboard) or missing classes, in genlab's feature spaces.

    python scripts/calibrate_fid.py --root ../shared/data --json docs/fid_calibration.json \\
        --markdown docs/metrics.md
    python scripts/calibrate_fid.py --from-json docs/fid_calibration.json --markdown docs/metrics.md

Reference set: the training images (Fashion-MNIST: 60,000; MNIST: the 5,000 bundled ones).
Compared set: the test images (Fashion-MNIST: 10,000; MNIST: the 2,000 test images the MNIST
feature net never saw), clean, corrupted, or only those of the first 5 classes or of class 0
(as a generator that dropped modes would draw). The clean row is the floor a perfect generator
reaches with that many samples. Rows are keyed (``clean``, ``blur_0.5``, ``noise_0.05``,
``noise_0.1``, ``classes_5``, ``classes_1``, ``checkerboard_0.1``, ...) in the JSON, which the
Markdown tables are generated from: into a file of their own, or, where the file has the two
lines ``<!-- calibration:start -->`` and ``<!-- calibration:end -->``, between them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Collection, Iterator

import torch
from torchvision.transforms.functional import gaussian_blur

from genlab.data import image_sources as src
from genlab.metrics.feature_nets import load_feature_net, mnist_test_split, registry
from genlab.metrics.image_quality import extract, feature_metrics, kth_nn_radius

NOISE = (0.05, 0.1, 0.2, 0.4)   # std of added Gaussian noise, pixels in [0, 1], then clipped
BLUR = (0.5, 1.0, 2.0)          # std in pixels of a Gaussian blur
CHECKERBOARD = (0.1,)           # amplitude of a one-pixel checkerboard added, then clipped
CLASSES = (5, 1)                # keep only the images of classes 0..n-1
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "class_tv")


def image_sets(dataset: str, root: str) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Reference images, and compared images with their labels, as floats in [0, 1]."""
    to_float = lambda t: t.unsqueeze(1).float() / 255  # noqa: E731
    test_x, test_y = src.load_local(root, dataset, "test")
    if dataset == "fashion_mnist":
        return to_float(src.load_local(root, dataset, "train")[0]), (to_float(test_x), test_y)
    _, held = mnist_test_split(len(test_y), registry()["mnist"]["seed"])  # never seen by the MNIST net
    return to_float(src.load_bundled()[0]), (to_float(test_x[held]), test_y[held])


def compared_sets(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> Iterator[tuple[str, str, torch.Tensor]]:
    """(key, description, images) for every row of the table."""
    yield "clean", "clean (real vs real)", x
    gen = torch.Generator().manual_seed(seed)
    for s in NOISE:
        yield f"noise_{s}", f"Gaussian noise σ={s}", (x + s * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    for s in BLUR:
        k = 2 * int(3 * s) + 1
        yield f"blur_{s}", f"Gaussian blur σ={s} px", gaussian_blur(x, kernel_size=[k, k], sigma=[s, s])
    for a in CHECKERBOARD:
        rows, cols = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
        board = a * (1 - 2 * ((rows + cols) % 2)).float()
        yield f"checkerboard_{a}", f"checkerboard ±{a} added", (x + board).clamp(0, 1)
    for n in CLASSES:
        yield f"classes_{n}", f"classes 0–{n - 1} only" if n > 1 else "class 0 only", x[y < n]


def calibrate(reference: torch.Tensor, compared: torch.Tensor, labels: torch.Tensor, dataset: str,
              keys: Collection[str] | None = None, log=print, kid_subsets: int = 50) -> dict[str, dict]:
    """The metrics of every compared set (or of those in ``keys``) against the reference set, keyed
    by row (KID over ``kid_subsets`` subsets: its costliest part)."""
    net = load_feature_net(dataset)
    ref = extract(net, reference)
    radii = kth_nn_radius(ref)
    rows = {}
    for key, about, images in compared_sets(compared, labels):
        if keys is not None and key not in keys:
            continue
        metrics = feature_metrics(ref, extract(net, images), real_radii=radii, kid_subsets=kid_subsets)
        rows[key] = {"set": about, "images": len(images), **metrics}
        log(f"{dataset:<14} {about:<24} FID {metrics['fid']:8.3f}  KID {metrics['kid']:.4f}  "
            f"P {metrics['precision']:.3f}  R {metrics['recall']:.3f}  class TV {metrics['class_tv']:.3f}")
    return rows


def markdown(results: dict) -> str:
    """The calibration tables, one per dataset, from the JSON that ``calibrate`` results make."""
    about = results["measured"]
    lines = [f"Measured {about['date']} on {about['machine']} with torch {about['torch']}: "
             "`python scripts/calibrate_fid.py --root ../shared/data --json docs/fid_calibration.json "
             "--markdown docs/metrics.md` (the tables are generated from that JSON).", ""]
    for dataset, entry in results["datasets"].items():
        lines += [f"### {dataset}: compared sets against {entry['reference']:,} training images", "",
                  "| key | compared set | images | " + " | ".join(METRICS) + " |",
                  "|---|---|---|" + "---|" * len(METRICS)]
        for key, row in entry["rows"].items():
            values = " | ".join(f"{row[m]:.4f}" if m == "kid" else f"{row[m]:.3f}" if m != "fid" else f"{row[m]:.2f}"
                                for m in METRICS)
            lines.append(f"| `{key}` | {row['set']} | {row['images']:,} | {values} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"])
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="only render --markdown from the results in this JSON")
    args = parser.parse_args()

    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = {"measured": {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
                                "torch": torch.__version__}, "datasets": {}}
        for dataset in args.datasets:
            start = time.perf_counter()
            reference, (compared, labels) = image_sets(dataset, args.root)
            rows = calibrate(reference, compared, labels, dataset)
            results["datasets"][dataset] = {"reference": len(reference), "rows": rows,
                                            "seconds": round(time.perf_counter() - start, 1)}
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        write_markdown(args.markdown, markdown(results))


def write_markdown(path: Path, tables: str) -> None:
    """``tables`` between the calibration markers of ``path`` if it has them, else as the whole file."""
    start, end = "<!-- calibration:start -->", "<!-- calibration:end -->"
    text = path.read_text() if path.is_file() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        tables = before + start + "\n" + tables + "\n" + end + rest.split(end, 1)[1]
    path.write_text(tables)


if __name__ == "__main__":
    main()

"""What does a given FID mean? FID/KID/precision/recall between real image sets, and for real
images corrupted by Gaussian noise and blur at a few strengths, in genlab's feature spaces.

    python scripts/calibrate_fid.py --root ../shared/data [--markdown docs/fid_calibration.md]

Reference set: the training images (Fashion-MNIST: 60,000; MNIST: the 5,000 bundled ones).
Compared set: the test images (Fashion-MNIST: 10,000; MNIST: the 2,000 test images the MNIST
feature net never saw), clean and corrupted. The clean row is the floor a perfect generator
would reach with that many samples.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

from genlab.data import image_sources as src
from genlab.metrics.feature_nets import load_feature_net, mnist_test_split, registry
from genlab.metrics.image_quality import extract, fid_kid, precision_recall_density_coverage

NOISE = (0.05, 0.1, 0.2, 0.4)   # std of added Gaussian noise, pixels in [0, 1], then clipped
BLUR = (0.5, 1.0, 2.0)          # std in pixels of a Gaussian blur


def image_sets(dataset: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    to_float = lambda t: t.unsqueeze(1).float() / 255  # noqa: E731
    if dataset == "fashion_mnist":
        return to_float(src.load_local(root, dataset, "train")[0]), to_float(src.load_local(root, dataset, "test")[0])
    seed = registry()["mnist"]["seed"]
    test = src.load_local(root, dataset, "test")[0]
    _, held = mnist_test_split(len(test), seed)  # the test images the MNIST net never saw
    return to_float(src.load_bundled()[0]), to_float(test[held])


def corruptions(x: torch.Tensor, seed: int = 0):
    yield "clean (real vs real)", x
    gen = torch.Generator().manual_seed(seed)
    for s in NOISE:
        yield f"Gaussian noise σ={s}", (x + s * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    for s in BLUR:
        k = 2 * int(3 * s) + 1
        yield f"Gaussian blur σ={s} px", gaussian_blur(x, kernel_size=[k, k], sigma=[s, s])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"])
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    results, lines = {}, []
    for dataset in args.datasets:
        start = time.perf_counter()
        net = load_feature_net(dataset)
        reference, compared = image_sets(dataset, args.root)
        ref = extract(net, reference)
        rows = []
        for name, images in corruptions(compared):
            fake = extract(net, images)
            m = {**fid_kid(ref, fake), **precision_recall_density_coverage(ref, fake)}
            rows.append({"set": name, **m})
            print(f"{dataset:<14} {name:<24} FID {m['fid']:8.3f}  KID {m['kid']:.4f}  "
                  f"P {m['precision']:.3f}  R {m['recall']:.3f}", flush=True)
        results[dataset] = {"reference": len(reference), "compared": len(compared), "rows": rows,
                            "seconds": time.perf_counter() - start}
        lines += [f"### {dataset}: {len(compared):,} test images against {len(reference):,} training images", "",
                  "| compared set | FID | KID | precision | recall | density | coverage |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['set']} | {r['fid']:.2f} | {r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                  f"{r['density']:.3f} | {r['coverage']:.3f} |" for r in rows]
        lines.append("")
    header = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} with torch {torch.__version__}: "
              "`python scripts/calibrate_fid.py --root ../shared/data`\n")
    if args.markdown:
        args.markdown.write_text(header + "\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

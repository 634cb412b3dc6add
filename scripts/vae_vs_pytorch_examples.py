"""Side-by-side: genlab's VAE versus the classic ``pytorch/examples`` VAE loop, same data.

Both train 10 epochs on Fashion-MNIST with batch 128, Adam 1e-3 and the continuous-pixel BCE
ELBO (no binarization), then report the test loss in nats per image (-ELBO, one z sample, as
the example computes it) and the seconds per epoch (training plus the per-epoch test/validation
pass each does; genlab's also writes checkpoints and sample grids). The reference trains on all
60,000 images, genlab on 54,000 (6,000 held out for validation and the best checkpoint). The reference loop is re-typed from pytorch/examples ``vae/main.py`` (784-400-20
MLP, torchvision dataset with ``ToTensor``, per-sample DataLoader) so it runs offline.

    python scripts/vae_vs_pytorch_examples.py --root ../shared/data [--epochs 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- reference loop
class ExampleVAE(nn.Module):
    """pytorch/examples vae/main.py, unchanged in shape."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def example_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_reference(root: str, epochs: int, seed: int) -> dict:
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    train_ds = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    test_ds = datasets.FashionMNIST(root, train=False, download=False, transform=transforms.ToTensor())
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=128, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=128, shuffle=False)
    model = ExampleVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epoch_times, test_losses = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for data, _ in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = example_loss(recon, data, mu, logvar)
            loss.backward()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                recon, mu, logvar = model(data)
                test_loss += example_loss(recon, data, mu, logvar).item()
        epoch_times.append(time.perf_counter() - start)
        test_losses.append(test_loss / len(test_ds))
    return {"test_loss": test_losses[-1], "test_losses": test_losses, "epoch_seconds": epoch_times,
            "train_images": len(train_ds)}


# ----------------------------------------------------------------------------- genlab
def run_genlab(root: str, epochs: int, seed: int, overrides: list[str]) -> dict:
    from genlab.train import train
    from genlab.utils.config import compose_config

    with tempfile.TemporaryDirectory() as out:
        cfg = compose_config("train", [
            "experiment=vae_fashion_mnist", f"data.root={root}", "data.source=local",
            f"trainer.max_epochs={epochs}", f"seed={seed}", "logger=csv", *overrides,
        ], output_dir=out)
        metrics = train(cfg)
    return {"test_loss": metrics["test/elbo"], "epoch_seconds": metrics["time/epoch_seconds"],
            "val_loss": metrics["val/elbo"], "overrides": overrides}


# genlab configurations compared with the reference, each a list of config overrides
VARIANTS = {
    "genlab model=vae (784-256-32)": [],
    "genlab, the example's net (784-400-20)": [
        "model.latent_dim=20", "model.encoder.hidden_dims=[400]", "model.decoder.hidden_dims=[400]"],
    "genlab, 2-layer MLP (784-512-256-32)": [
        "model.encoder.hidden_dims=[512,256]", "model.decoder.hidden_dims=[256,512]"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data", help="folder holding FashionMNIST/raw")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--only-default", action="store_true", help="run only genlab's default model=vae")
    parser.add_argument("overrides", nargs="*", help="extra genlab config overrides for every variant")
    args = parser.parse_args()

    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
               "epochs": args.epochs, "seed": args.seed, "runs": {}}
    runs = results["runs"]
    if not args.skip_reference:
        runs["pytorch/examples vae (784-400-20)"] = run_reference(args.root, args.epochs, args.seed)
    for name, overrides in VARIANTS.items():
        runs[name] = run_genlab(args.root, args.epochs, args.seed, overrides + args.overrides)
        if args.only_default:
            break

    print(f"\n{'':<42}{'test loss (nats/image)':>24}{'s/epoch':>10}")
    for name, r in runs.items():
        sec = r["epoch_seconds"]
        sec = sorted(sec)[len(sec) // 2] if isinstance(sec, list) else sec  # median for the reference
        print(f"{name:<42}{r['test_loss']:>24.1f}{sec:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

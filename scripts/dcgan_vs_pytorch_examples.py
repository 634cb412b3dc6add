"""Training throughput of genlab's GAN (``model=dcgan``) against the classic ``pytorch/examples``
DCGAN loop, on identical work, in one run.

Both sides train the same nets (genlab's 28x28 DCGAN generator and discriminator) on the
Fashion-MNIST training images with the same batch size, Adam(2e-4, betas (0.5, 0.999)) for both
nets and the BCE game. The reference is the loop of ``dcgan/main.py`` re-typed so it runs
offline: torchvision dataset with ``ToTensor`` + ``Normalize``, a shuffling ``DataLoader``,
``errD_real.backward(); errD_fake.backward(); optimizerD.step()`` then the generator step on the
same fakes. genlab runs ``train.py``'s own code path (``genlab.train.train``) with W&B off and the
CSV logger on. Repetitions alternate between the two; each times ``--steps`` batches after
``--warmup`` batches. Reported: images per second (median and range) and the ratio genlab/raw.

    python scripts/dcgan_vs_pytorch_examples.py --root ../shared/data [--batch-size 128] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from pytorch_lightning import Callback

TIMES: dict[str, float] = {}


class BatchTimer(Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last training batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            TIMES["start"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        TIMES["end"] = time.perf_counter()


def dcgan_nets(overrides: list[str]) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    from hydra.utils import instantiate

    from genlab.utils.config import compose_config

    cfg = compose_config("train", ["model=dcgan", *overrides], output_dir=tempfile.gettempdir())
    return instantiate(cfg.model.generator), instantiate(cfg.model.discriminator), cfg.model.latent_dim


def run_reference(root: str, batch_size: int, warmup: int, steps: int, workers: int, overrides: list[str]) -> float:
    from torchvision import datasets, transforms

    netG, netD, nz = dcgan_nets(overrides)
    dataset = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    criterion = torch.nn.BCEWithLogitsLoss()  # the example's BCELoss on sigmoid outputs, autocast-safe
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = None
    for i, (real, _) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        netD.zero_grad()
        b = real.size(0)
        errD_real = criterion(netD(real), torch.ones(b))
        errD_real.backward()
        fake = netG(torch.randn(b, nz))
        errD_fake = criterion(netD(fake.detach()), torch.zeros(b))
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        errG = criterion(netD(fake), torch.ones(b))
        errG.backward()
        optG.step()
        if i + 1 == warmup + steps:
            break
    return steps * batch_size / (time.perf_counter() - start)


def run_genlab(root: str, batch_size: int, warmup: int, steps: int, overrides: list[str]) -> float:
    from genlab.train import train
    from genlab.utils.config import compose_config

    with tempfile.TemporaryDirectory() as out:
        cfg = compose_config("train", [
            "model=dcgan", "data=fashion_mnist", f"data.root={root}", "data.source=local",
            f"data.batch_size={batch_size}", "trainer.max_epochs=1", f"trainer.limit_train_batches={warmup + steps}",
            "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "logger=csv", "callbacks=none",
            "test=false", "+callbacks.timer._target_=__main__.BatchTimer", f"+callbacks.timer.warmup={warmup}",
            *overrides,
        ], output_dir=out)
        train(cfg)
    return steps * batch_size / (TIMES["end"] - TIMES["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data", help="folder holding FashionMNIST/raw")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="config overrides for both sides, e.g. model.generator.channels=[256,128]")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    rates: dict[str, list[float]] = {"pytorch/examples loop": [], "genlab": []}
    for rep in range(args.reps):  # interleaved, so drifts in machine speed hit both sides
        rates["pytorch/examples loop"].append(
            run_reference(args.root, args.batch_size, args.warmup, args.steps, args.workers, args.overrides))
        rates["genlab"].append(run_genlab(args.root, args.batch_size, args.warmup, args.steps, args.overrides))
        print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in rates.items()), flush=True)

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nDCGAN training, batch {args.batch_size}, {args.steps} timed steps x {args.reps} reps "
          f"({platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__})")
    for k, v in rates.items():
        print(f"  {k:<24} median {med[k]:7.0f} img/s  (range {min(v):.0f}-{max(v):.0f})")
    ratio = med["genlab"] / med["pytorch/examples loop"]
    print(f"  ratio genlab / raw: {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "median": med, "ratio": ratio, "args": vars(args)},
                                        indent=2, default=str))


if __name__ == "__main__":
    main()

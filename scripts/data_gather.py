"""How a training batch is gathered from in-memory data: the per-batch cost of the ways to turn
the DataLoader's list of indices into a tensor, and of advanced indexing against ``index_select``,
on the bundled MNIST images (``uint8 [N, 1, 28, 28]``) and Shakespeare's tokenized sentences.

    python scripts/data_gather.py [--batch-sizes 128 512] [--repeat 500]

genlab's datasets (``genlab.data.mnist.InMemoryImages``, ``genlab.data.text.InMemoryTokens``)
use ``genlab.data.in_memory.batch_indices`` and ``index_select``; the "before" rows are what they
did first (``torch.as_tensor(indices)`` and ``tensor[idx]``). Microseconds per batch, medians of
5 rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genlab.data import MNISTDataModule, TextDataModule
from genlab.data.in_memory import batch_indices


def images_before(dataset, indices):
    """``InMemoryImages.__getitems__`` as it was first written."""
    idx = torch.as_tensor(indices)
    return dataset.images[idx], dataset.labels[idx]


def tokens_before(dataset, indices):
    """``InMemoryTokens.__getitems__`` as it was first written."""
    idx = torch.as_tensor(indices)
    lengths = dataset.lengths[idx]
    return dataset.tokens[idx, : int(lengths.max())], lengths


def per_call_us(fn, repeat: int, rounds: int = 5) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()

    images_dm = MNISTDataModule(source="bundled")
    images_dm.setup("fit")
    text_dm = TextDataModule(corpus="shakespeare")
    text_dm.setup("fit")
    images = images_dm._splits["train"]
    tokens = text_dm._splits["train"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; images {tuple(images.images.shape)} "
          f"{images.images.dtype}, tokens {tuple(tokens.tokens.shape)}")
    print("| what | batch | before, us | now, us | before / now |")
    print("|---|---|---|---|---|")
    for bs in args.batch_sizes:
        order = torch.randperm(len(images))[:bs].tolist()
        idx = batch_indices(order)
        rows = [
            ("indices: list -> tensor", lambda: torch.as_tensor(order), lambda: batch_indices(order)),
            ("images: gather", lambda: images.images[idx], lambda: images.images.index_select(0, idx)),
            ("images: whole __getitems__", lambda: images_before(images, order), lambda: images.__getitems__(order)),
        ]
        t_order = torch.randperm(len(tokens))[:bs].tolist()
        rows.append(("tokens: whole __getitems__", lambda: tokens_before(tokens, t_order),
                     lambda: tokens.__getitems__(t_order)))
        for name, before, now in rows:
            b, n = per_call_us(before, args.repeat), per_call_us(now, args.repeat)
            print(f"| {name} | {bs} | {b:.1f} | {n:.1f} | {b / n:.1f}× |", flush=True)


if __name__ == "__main__":
    main()

"""The text models' likelihood on the sentences' tokens alone against every padded position.

    python scripts/text_step.py                         # text_lm, text_vae, text_gan; 3 repetitions
    python scripts/text_step.py --models text_lm --reps 5 --json text_step.json
    python scripts/text_step.py --device cuda           # the same on a GPU

``tokens`` (``RNNDecoder.nll_on_tokens``, what ``RNNDecoder.nll`` runs but in training on a GPU)
runs the output layer and the softmax over the vocabulary only where a sentence has a token;
``padded`` (``RNNDecoder.nll_every_position``, what ``nll`` runs in training on a GPU) runs them at
every position of the batch, padding included, with the cross-entropy taken over the ``[B, V, T]``
logits. Both sides run
in this process, in turn (``benchmark.interleaved``), on the CPU under ``keep_host_memory`` as
training does:

1. training throughput, sentences/s over the timed batches of ``train.py``'s code path
   (``benchmark.genlab_run``: the bundled Shakespeare, ``data.batch_size=64``, the CSV logger, no
   validation);
2. the likelihood as validation computes it: ``nll`` of the decoder of a freshly built model under
   ``no_grad``, over the validation split in batches of ``data.eval_batch_size`` (512);
3. how far the two sides' ``nll`` lie apart on those batches (the same weights; float32 sums in
   another order).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import benchmark  # scripts/benchmark.py
from genlab.data.tokenizers import PAD
from genlab.nets.text import RNNDecoder

NLL = RNNDecoder.nll
SIDES = {"tokens": RNNDecoder.nll_on_tokens, "padded": RNNDecoder.nll_every_position}


def use(side: str | None) -> None:
    """``nll`` runs ``side`` on every device; ``None``: as the model has it."""
    RNNDecoder.nll = NLL if side is None else SIDES[side]


def built(model: str):
    """The data module (set up) and a model of ``model=<model> data=text``, as ``train.py`` builds them."""
    from hydra.utils import instantiate

    from genlab.train import fill_model_settings

    cfg = benchmark.compose(model, ["data=text"])
    datamodule = instantiate(cfg.data)
    fill_model_settings(cfg, datamodule)
    return datamodule, instantiate(cfg.model).eval()


def latent(model, x: torch.Tensor) -> torch.Tensor:
    """What the model's decoder is given for ``x``: nothing (the language model), the posterior mean
    (the VAE), the code (the latent GAN)."""
    if getattr(model, "encoder", None) is None:
        return x.new_zeros(x.shape[0], 0, dtype=torch.float)
    out = model.encoder(x)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def evaluation(model: str, reps: int, device: str) -> dict:
    datamodule, net = built(model)
    net = net.to(device)
    batches = [(x, latent(net, x)) for x, _ in ((x.to(device), y) for x, y in datamodule.val_dataloader())]
    sentences = sum(len(x) for x, _ in batches)
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for side in benchmark.interleaved(SIDES, reps):
        use(side)
        start = time.perf_counter()
        for x, z in batches:
            net.decoder.nll(x, z)
        if device == "cuda":
            torch.cuda.synchronize()
        rates[side].append(sentences / (time.perf_counter() - start))
    use(None)
    a = torch.cat([net.decoder.nll_on_tokens(x, z) for x, z in batches])
    b = torch.cat([net.decoder.nll_every_position(x, z) for x, z in batches])
    tokens = sum(int((x != PAD).sum()) for x, _ in batches)
    positions = sum(x.numel() for x, _ in batches)
    return {"model": model, "sentences": sentences, "batch_size": datamodule.eval_batch_size,
            "padding": 1 - tokens / positions, "runs": rates,
            "median": {side: statistics.median(r) for side, r in rates.items()},
            "max_abs_diff": float((a - b).abs().max()), "max_rel_diff": float(((a - b).abs() / b.abs()).max()),
            "total_nll": {"tokens": float(a.double().sum()), "padded": float(b.double().sum())}}


def training(model: str, batch_size: int, warmup: int, steps: int, reps: int, device: str) -> dict:
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for side in benchmark.interleaved(SIDES, reps):
        use(side)
        rates[side].append(benchmark.genlab_run(model, batch_size, warmup, steps, device, [], data=("data=text",)))
    use(None)
    return {"model": model, "batch_size": batch_size, "steps": steps, "runs": rates,
            "median": {side: statistics.median(r) for side, r in rates.items()}}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["text_lm", "text_vae", "text_gan"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="timed training batches per run")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    if args.device == "cpu":
        from genlab.utils.trainer_setup import keep_freed_host_memory

        keep_freed_host_memory()  # as train.py does on a CPU
    torch.manual_seed(0)
    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "training": [], "evaluation": []}
    print(f"Device: {results['device']}\n")
    print(f"Training, sentences/s (median, range of {args.reps}), batch {args.batch_size}:\n\n"
          "| model | tokens | padded | tokens / padded |\n|---|---|---|---|", flush=True)
    for model in args.models:
        r = training(model, args.batch_size, args.warmup, args.steps, args.reps, args.device)
        results["training"].append(r)
        m = r["median"]
        print(f"| {model} | {spread(r['runs']['tokens'])} | {spread(r['runs']['padded'])} | "
              f"{m['tokens'] / m['padded']:.2f} |", flush=True)
    print(f"\nValidation's likelihood, sentences/s (median, range of {args.reps}):\n\n"
          "| model | batch | padding | tokens | padded | tokens / padded | max abs (rel) difference |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for model in args.models:
        r = evaluation(model, args.reps, args.device)
        results["evaluation"].append(r)
        m = r["median"]
        print(f"| {model} | {r['batch_size']} | {r['padding']:.0%} | {spread(r['runs']['tokens'])} | "
              f"{spread(r['runs']['padded'])} | {m['tokens'] / m['padded']:.2f} | "
              f"{r['max_abs_diff']:.2g} ({r['max_rel_diff']:.1g}) |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

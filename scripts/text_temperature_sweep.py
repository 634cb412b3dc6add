"""Quality against diversity of one text checkpoint across sampling temperatures: BLEU-n of its
samples against a split's sentences (quality) and self-BLEU-n among them (lower = more diverse),
as Caccia et al. 2018 compare language GANs with temperature-tuned language models.

    python scripts/text_temperature_sweep.py outputs/.../checkpoints/last.ckpt --temperatures 0.5 0.7 1.0 1.3

Writes ``temperature_sweep.{md,csv,png}`` next to the checkpoint's run folder (``--out`` to change).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from genlab.checkpoint import model_from_checkpoint, run_dir_of, tokenizer_from_checkpoint
from genlab.metrics.text_quality import References, draw_sentences, quality_diversity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.7, 0.85, 1.0, 1.2])
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the table and the plot")
    args = parser.parse_args()

    from hydra.utils import instantiate

    model, run_cfg, ckpt = model_from_checkpoint(args.ckpt)
    datamodule = instantiate(run_cfg.data)
    datamodule.tokenizer = tokenizer_from_checkpoint(ckpt)
    references = References(datamodule.token_lists(args.split), max_n=4)
    rows = []
    for t in args.temperatures:
        scores = quality_diversity(draw_sentences(model, args.num_samples, seed=args.seed, temperature=t), references)
        rows.append({"temperature": t, **{k: round(v, 4) for k, v in scores.items()}})
        print(f"T={t:g}  " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()), flush=True)

    out = args.out or run_dir_of(args.ckpt)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "temperature_sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(f"{r[k]:g}" for k in header) + " |" for r in rows]
    (out / "temperature_sweep.md").write_text(
        f"{args.ckpt}: {args.num_samples} samples per temperature vs the {args.split} split\n\n" + "\n".join(table) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for n, marker in ((2, "o"), (4, "s")):
        ax.plot([r[f"self_bleu{n}"] for r in rows], [r[f"bleu{n}"] for r in rows], marker=marker, label=f"BLEU-{n}")
        for r in rows:
            ax.annotate(f"{r['temperature']:g}", (r[f"self_bleu{n}"], r[f"bleu{n}"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("self-BLEU (lower = more diverse)")
    ax.set_ylabel(f"BLEU vs {args.split} (higher = better quality)")
    ax.set_title("Quality-diversity across temperatures")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "temperature_sweep.png", dpi=120)
    print("\n".join(table))
    print(f"Wrote {out / 'temperature_sweep.md'}, .csv and .png")


if __name__ == "__main__":
    main()

"""Quality against diversity of text checkpoints across sampling temperatures: BLEU-n of their
samples against a split's sentences (quality) and self-BLEU-n among them (lower = more diverse),
as Caccia et al. 2018 compare language GANs with temperature-tuned language models.

    python scripts/text_temperature_sweep.py outputs/.../checkpoints/last.ckpt --temperatures 0.5 0.7 1.0 1.3
    python scripts/text_temperature_sweep.py outputs/text_shakespeare/word/text_{lm,vae,gan}/checkpoints/last.ckpt

Writes ``temperature_sweep.{md,csv,png}`` next to the checkpoint's run folder, or for several
checkpoints in the folder that holds their run folders (``--out`` to change): one table, and one
plot with a curve per checkpoint, named by its run folder (and the checkpoint's file name where
two come from one run).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from genlab.checkpoint import model_from_checkpoint, run_dir_of, tokenizer_from_checkpoint
from genlab.metrics.text_quality import References, draw_sentences, quality_diversity


# the data settings that decide a split's sentences: checkpoints compared on one plot must agree on them
SPLIT_KEYS = ("corpus", "path", "split_sentences", "tokenizer", "lowercase", "max_len", "val_size", "test_size",
              "max_examples", "seed")


def curve_names(ckpts: list[str]) -> list[str]:
    """A name per checkpoint for the table and the plot: its run folder's, with the checkpoint's
    file name where two checkpoints come from one run (``text_lm/best``, ``text_lm/last``)."""
    runs = [run_dir_of(c).name for c in ckpts]
    names = [f"{run}/{Path(c).stem}" if runs.count(run) > 1 else run for run, c in zip(runs, ckpts)]
    if len(set(names)) < len(names):
        raise SystemExit(f"the same checkpoint is given twice: {' '.join(ckpts)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", nargs="+", metavar="ckpt")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.7, 0.85, 1.0, 1.2])
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the table and the plot")
    args = parser.parse_args()

    from hydra.utils import instantiate

    rows, references = [], None
    for ckpt_path, name in zip(args.ckpts, curve_names(args.ckpts)):
        model, run_cfg, ckpt = model_from_checkpoint(ckpt_path)
        split = {key: run_cfg.data.get(key) for key in SPLIT_KEYS}
        if references is None:  # the first checkpoint's split; the others must share it and its vocabulary
            datamodule = instantiate(run_cfg.data)
            datamodule.tokenizer = tokenizer_from_checkpoint(ckpt)
            references, first = References(datamodule.token_lists(args.split), max_n=4), split
        elif split != first or tokenizer_from_checkpoint(ckpt).to_dict() != datamodule.tokenizer.to_dict():
            parser.error(f"{ckpt_path} was trained on other data or another vocabulary than {args.ckpts[0]}")
        for t in args.temperatures:
            scores = quality_diversity(draw_sentences(model, args.num_samples, seed=args.seed, temperature=t), references)
            rows.append({"model": name, "temperature": t, **{k: round(v, 4) for k, v in scores.items()}})
            print(f"{name} T={t:g}  " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()), flush=True)

    runs = [run_dir_of(c) for c in args.ckpts]
    out = args.out or (runs[0] if len(runs) == 1 else Path(os.path.commonpath([r.parent for r in runs])))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "temperature_sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(f"{r[k]:g}" if isinstance(r[k], float) else str(r[k]) for k in header) + " |"
              for r in rows]
    (out / "temperature_sweep.md").write_text(
        f"{' '.join(args.ckpts)}: {args.num_samples} samples per temperature vs the {args.split} split\n\n"
        + "\n".join(table) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name in dict.fromkeys(r["model"] for r in rows):
        curve = [r for r in rows if r["model"] == name]
        for n, style in ((2, "o--"), (4, "s-")):
            line, = ax.plot([r[f"self_bleu{n}"] for r in curve], [r[f"bleu{n}"] for r in curve], style,
                            label=f"{name}, BLEU-{n}" if len(runs) > 1 else f"BLEU-{n}",
                            color=ax.lines[-1].get_color() if n == 4 and ax.lines else None)
            for r in curve:
                ax.annotate(f"{r['temperature']:g}", (r[f"self_bleu{n}"], r[f"bleu{n}"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("self-BLEU (lower = more diverse)")
    ax.set_ylabel(f"BLEU vs {args.split} (higher = better quality)")
    ax.set_title("Quality-diversity across temperatures")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "temperature_sweep.png", dpi=120)
    print("\n".join(table))
    print(f"Wrote {out / 'temperature_sweep.md'}, .csv and .png")


if __name__ == "__main__":
    main()

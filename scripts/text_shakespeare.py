"""Train the three text models on the shipped Shakespeare corpus with one tokenizer, under the same
budget, and report what the text issue asks: validation perplexity (exact for the LM, the ELBO
bound for the VAE), KL and active units, BLEU-4/self-BLEU-4 at two temperatures, and samples.

    python scripts/text_shakespeare.py --tokenizer word --batches 1500
    python scripts/text_shakespeare.py --tokenizer char --batches 1000

Each model trains from its preset (``conf/experiment/text_<model>_shakespeare.yaml``: word tokens,
1,500 batches of 64) for ``--batches`` training batches (one epoch, cut there), then ``eval.py``
scores the best checkpoint on the validation split. Output: a Markdown table on stdout and in
``outputs/text_shakespeare/<tokenizer>/report.md``, ten samples per model at temperature 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = {  # on top of the presets' word tokens
    "word": [],
    "char": ["data.tokenizer=char", "data.max_len=80", "data.lowercase=false", "data.max_vocab=null"],
}
MODELS = ("text_lm", "text_vae", "text_gan")


def run(script: str, *args: str) -> None:
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{script} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", choices=sorted(DATA), default="word")
    parser.add_argument("--batches", type=int, default=1500, help="training batches per model (the presets': 1500)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=500, help="sentences for BLEU / self-BLEU")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()

    out = ROOT / "outputs" / "text_shakespeare" / args.tokenizer
    rows, samples = [], {}
    for model in args.models:
        run_dir = out / model
        start = time.perf_counter()
        run("train.py", f"experiment={model}_shakespeare", *DATA[args.tokenizer],
            f"data.batch_size={args.batch_size}", f"trainer.limit_train_batches={args.batches}", "test=false", f"hydra.run.dir={run_dir}", "task_name=text_shakespeare")
        seconds = time.perf_counter() - start
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        run("eval.py", f"ckpt_path={ckpt}", "split=val", f"metrics.num_samples={args.num_samples}",
            "metrics.temperatures=[1.0,0.7]", "nll_samples=10", "logger=csv", f"hydra.run.dir={run_dir}/eval")
        m = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        run("generate.py", f"ckpt_path={ckpt}", "num_samples=10", "temperature=1.0", f"out={run_dir}/samples10.txt",
            f"hydra.run.dir={run_dir}/generate")
        samples[model] = (run_dir / "samples10.txt").read_text(encoding="utf-8").splitlines()
        ppl = m.get("val/ppl", float("nan"))
        rows.append(
            f"| {model} | {ppl:.1f} | {m.get('val/kl', float('nan')):.2f} | "
            f"{m.get('val/active_units', float('nan')):.0f} | "
            f"{m['val/bleu4@t1']:.3f} / {m['val/self_bleu4@t1']:.3f} | {m['val/bleu4@t0.7']:.3f} / {m['val/self_bleu4@t0.7']:.3f} | "
            f"{seconds:.0f} |"
        )
    report = [
        f"Shakespeare ({args.tokenizer} tokens), {args.batches} batches of {args.batch_size} per model, validation split",
        "",
        "| model | val ppl (VAE: ELBO bound) | KL (nats/sentence) | active units | "
        "BLEU-4 / self-BLEU-4 @ T=1.0 | @ T=0.7 | train+val s |",
        "|---|---|---|---|---|---|---|",
        *rows, "",
    ]
    for model, lines in samples.items():
        report += [f"### {model}: ten samples at temperature 1.0", "", *[f"- {s}" for s in lines], ""]
    (out / "report.md").write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))


if __name__ == "__main__":
    main()

"""``genlab-compare <sweep or runs folder>`` / ``python -m genlab.compare``: one table of runs.

Every run folder below the given one (a folder with ``metrics.csv`` or ``run_info.json``) becomes
a row: its overrides (``.hydra/overrides.yaml``), the final value of each metric, the best value
of the ``--metric`` it is sorted by, wall time and status (a failed job's ``failure.json``). Runs
that differ only by ``seed`` are one row, mean ± std over them and their count ``n``
(``--per-run`` lists them one by one); ``--baseline`` adds each metric's difference to one row.
The table is printed and written as ``compare.md`` and ``compare.csv``; ``compare.png`` plots the
metric's curve across runs (the mean over seeds, with a band from their lowest to their highest). Everything is read from local files, so it works offline; the same table comes from the
runs' offline W&B files with ``--wandb-files`` (no account needed), or from the W&B public API
with ``--wandb entity/project --group <sweep>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml


def find_runs(root: Path) -> list[Path]:
    """Run folders below ``root`` (itself included), in a stable order (sweep job number)."""
    marks = ("metrics.csv", "run_info.json", "failure.json")
    found = {p.parent for mark in marks for p in root.rglob(mark) if "wandb" not in p.parts}
    found = {d for d in found if not any(d != o and o in d.parents for o in found)}  # outermost: eval/ sits inside a run
    return sorted(found, key=lambda d: [int(s) if s.isdigit() else s for s in d.relative_to(root).parts])


def parse_value(text: str) -> Any:
    """An override's value as YAML reads it (``8`` -> 8, ``1e-3`` -> 0.001), else the text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def settings_of(config: dict[str, Any] | None, overrides: list[str], all_settings: bool) -> dict[str, Any]:
    """The run's settings: its overrides as ``{key: value}`` (``hydra.*`` left out), or with
    ``all_settings`` every key of its config, flattened to dotted names."""
    if all_settings and config:
        def flat(node: Any, prefix: str = "") -> dict[str, Any]:
            if isinstance(node, dict):
                return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}
            return {prefix[:-1]: node if not isinstance(node, list) else str(node)}
        return flat(config)
    found = {}
    for o in overrides:
        key, _, value = o.partition("=")
        if not key.lstrip("+~").startswith("hydra"):
            found[key.lstrip("+~")] = parse_value(value)
    return found


def read_curves(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``metrics.csv`` (Lightning's CSV logger) as ``{metric: [(step, value), ...]}``."""
    curves: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return curves
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                try:
                    curves.setdefault(key, []).append((step, float(value)))
                except ValueError:
                    continue
    return curves


def read_run(run: Path, metric: str, mode: str, all_settings: bool = False) -> dict[str, Any]:
    """One row: overrides, settings, final metrics, the best ``metric``, wall time, status."""
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    curves = read_curves(run / "metrics.csv")
    config_file = run / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if all_settings and config_file.is_file() else None
    row: dict[str, Any] = {"run": str(run), "overrides": " ".join(overrides or []), "status": "ok",
                           "override_list": list(overrides or []),
                           "settings": settings_of(config, list(overrides or []), all_settings)}
    row.update({k: v[-1][1] for k, v in curves.items()})
    info_file = run / "run_info.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        row.update(info.get("final_metrics", {}))
        row["parameters"] = info.get("parameters", {}).get("total")
        row["git_commit"] = info.get("git_commit")
    eval_file = run / "metrics.json"
    if eval_file.is_file():
        row.update({f"eval:{k}": v for k, v in json.loads(eval_file.read_text()).get("metrics", {}).items()})
    add_curve(row, curves.get(metric, []), metric, mode)
    failure = run / "failure.json"
    if failure.is_file():
        row["status"] = "failed: " + json.loads(failure.read_text()).get("error", "")[:120]
    elif not curves and not info_file.is_file():
        row["status"] = "no metrics"
    return row


def add_curve(row: dict[str, Any], curve: list[tuple[int, Any]], metric: str, mode: str) -> None:
    """The sort metric's curve (for the plot) and its best value, on the row."""
    row["curve"] = [(step, float(v)) for step, v in curve if is_number(v)]
    if row["curve"]:
        values = [v for _, v in row["curve"]]
        row[f"best {metric}"] = min(values) if mode == "min" else max(values)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# what genlab's RunInfo adds to a W&B run's config beside the composed config
RUN_INFO_KEYS = ("data_info", "parameters", "git_commit", "world_size", "startup", "overrides")


def wandb_row(run: dict[str, Any], metric: str, mode: str, all_settings: bool = False) -> dict[str, Any]:
    """A W&B run as the row its run folder gives: overrides (from its config's ``overrides``, which
    genlab logs), settings, the summary's values (the last of each metric and the final metrics;
    W&B's ``_`` keys, media, ``epoch``, the step and ``best/*`` left out: the table computes
    ``best <metric>`` from the curve), parameters and status. ``run`` holds ``name``, ``state``,
    ``config``, ``summary``, ``history`` (at least the metric's ``[(step, value)]``) and ``folder``."""
    config = run.get("config") or {}
    overrides = config.get("overrides")
    state = run.get("state")
    row: dict[str, Any] = {
        "run": run.get("folder") or run.get("name"),
        "overrides": " ".join(overrides) if overrides is not None else run.get("name") or "",
        "override_list": list(overrides) if overrides is not None else None,
        "status": "ok" if state == "finished" else state,
        "settings": settings_of({k: v for k, v in config.items() if k not in RUN_INFO_KEYS}, overrides or [], all_settings),
    }
    row.update({k: v for k, v in run.get("summary", {}).items()
                if is_number(v) and not k.startswith(("_", "best/")) and k not in ("epoch", "trainer/global_step")})
    if isinstance(config.get("parameters"), dict):
        row["parameters"] = config["parameters"].get("total")
    if config.get("git_commit"):
        row["git_commit"] = config["git_commit"]
    add_curve(row, run.get("history", {}).get(metric, []), metric, mode)
    return row


def wandb_rows(project: str, group: str | None, metric: str, mode: str, all_settings: bool = False) -> list[dict[str, Any]]:
    """The rows of a W&B project's runs (of one group) from W&B's public API: online runs, or
    offline ones after ``wandb sync``."""
    import wandb

    rows = []
    for r in wandb.Api().runs(project, filters={"group": group} if group else {}):
        if getattr(r, "job_type", None) == "compare":  # a table logged by --log-wandb, not a run
            continue
        history = [(h.get("trainer/global_step", h.get("_step")), h.get(metric))
                   for h in r.scan_history(keys=[metric])] if metric else []
        run = {"name": r.name, "state": r.state, "config": dict(r.config), "summary": dict(r.summary.items()),
               "history": {metric: history}, "folder": r.url}
        rows.append(wandb_row(run, metric, mode, all_settings))
    return rows


def wandb_file_rows(folder: Path, metric: str, mode: str, all_settings: bool = False) -> list[dict[str, Any]]:
    """The rows of the offline W&B runs below ``folder`` (their ``run-<id>.wandb`` files: a sweep's
    folder, or a ``wandb/`` folder copied from a cluster), in the order the runs started."""
    from genlab.utils.wandb_files import read_run, run_files

    runs = (read_run(paths) for paths in run_files(folder).values())
    return [wandb_row(run, metric, mode, all_settings) for run in runs if run.get("job_type") != "compare"]


def without_seed(overrides: list[str]) -> tuple[str, ...]:
    return tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+") != "seed")


def merge_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose overrides are the same but for ``seed`` become one row: each metric's mean over
    them, its standard deviation under ``<metric> ±``, their count ``n`` and their folders; a
    configuration run once has ``n`` = 1. Failed runs stay rows of their own."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    merged = []
    for row in rows:
        row["settings"] = {k: v for k, v in row.get("settings", {}).items() if k != "seed"}  # the repetition axis
        if row.get("status") != "ok" or row.get("override_list") is None:
            merged.append({**row, "n": 1})
            continue
        groups.setdefault(without_seed(row["override_list"]), []).append(row)
    for key, members in groups.items():
        if len(members) == 1:
            merged.append({**members[0], "n": 1})
            continue
        row: dict[str, Any] = {"run": " ".join(m["run"] for m in members), "runs": [m["run"] for m in members],
                               "curves": [m.get("curve", []) for m in members],
                               "settings": members[0]["settings"],
                               "override_list": list(key), "overrides": " ".join(key), "status": "ok", "n": len(members)}
        numeric = {k for m in members for k, v in m.items() if is_number(v)}
        for k in sorted(numeric - {"n"}):
            values = [float(m[k]) for m in members if isinstance(m.get(k), (int, float))]
            mean = sum(values) / len(values)
            row[k] = mean
            row[f"{k} ±"] = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        merged.append(row)
    return merged


def add_baseline(rows: list[dict[str, Any]], baseline: str, columns: list[str]) -> list[str]:
    """``Δ <metric>`` = the row's value minus the baseline row's, for each metric column. The
    baseline is the row of a run folder, or the one whose overrides hold every given override."""
    def matches(row: dict[str, Any]) -> bool:
        folders = row.get("runs") or [row["run"]]
        if any(Path(f).resolve() == Path(baseline).resolve() for f in folders):
            return True
        wanted = baseline.split()
        return bool(wanted) and all(o in (row.get("override_list") or row["overrides"].split()) for o in wanted)

    found = [r for r in rows if matches(r)]
    if len(found) != 1:
        raise SystemExit(f"genlab-compare: error: --baseline {baseline!r} matches {len(found)} rows; give a run "
                         "folder or overrides that name one row.")
    base = found[0]
    base["overrides"] = f"{base['overrides']} (baseline)".strip()
    deltas = []
    for column in columns:
        if isinstance(base.get(column), (int, float)):
            for row in rows:
                if isinstance(row.get(column), (int, float)):
                    row[f"Δ {column}"] = row[column] - base[column]
            deltas.append(f"Δ {column}")
    return deltas


def sort_rows(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    key = f"best {metric}" if any(f"best {metric}" in r for r in rows) else metric

    def order(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(key)
        if not isinstance(value, (int, float)) or math.isnan(value):
            return (1, 0.0)
        return (0, value if mode == "min" else -value)

    return sorted(rows, key=order)


def table_columns(rows: list[dict[str, Any]], metric: str, columns: list[str] | None) -> list[str]:
    if columns:
        wanted = columns
    else:  # the sort metric first, then what most runs report (train/ per-step values left out)
        keys = {k for r in rows for k in r if k not in ("run", "runs", "overrides", "override_list", "status", "git_commit", "n",
                                                       "settings", "curve", "curves")
                and not k.endswith(" ±") and not k.startswith("Δ ")}
        wanted = sorted(k for k in keys if not k.startswith("train/") and not k.startswith("eval:"))
        wanted = [k for k in (f"best {metric}", metric) if k in keys] + [k for k in wanted if k not in (metric, f"best {metric}")]
    return ["overrides", *wanted, *(["n"] if any("n" in r for r in rows) else []), "status"]


def differing_settings(rows: list[dict[str, Any]]) -> list[str]:
    """The settings whose values are not the same in every row (a key a row lacks counts as differing)."""
    keys = sorted({k for r in rows for k in r.get("settings", {})})
    missing = object()
    return [k for k in keys if len({repr(r.get("settings", {}).get(k, missing)) for r in rows}) > 1]


def fmt(value: Any, spread: Any = None) -> str:
    if isinstance(value, float):
        return f"{value:.4g} ± {spread:.2g}" if isinstance(spread, float) else f"{value:.4g}"
    return "" if value is None else str(value)


def shared_overrides(rows: list[dict[str, Any]]) -> list[str]:
    """The overrides every run of two or more has (a sweep's fixed settings): taken out of each
    row's ``overrides`` and the plot's labels, which then name what differs; returned in the
    first run's order, for the line above the table."""
    lists = [r.get("override_list") for r in rows]
    if len(rows) < 2 or any(o is None for o in lists):
        return []
    shared = [o for o in lists[0] if all(o in other for other in lists[1:])]
    for row in rows:
        row["overrides"] = " ".join(o for o in row["override_list"] if o not in shared)
    return shared


def write_outputs(rows: list[dict[str, Any]], columns: list[str], out: Path, shared: list[str] = ()) -> str:
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:  # the settings shown as columns
        row.update({f"setting {k}": v for k, v in row.get("settings", {}).items()})
    with open(out / "compare.csv", "w", newline="") as f:
        spreads = [f"{c} ±" for c in columns if any(f"{c} ±" in r for r in rows)]
        writer = csv.DictWriter(f, fieldnames=["run", *columns, *spreads], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(c.removeprefix("setting ") for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c), r.get(f"{c} ±")).replace("|", "/") for c in columns) + " |" for r in rows]
    if shared:
        lines = [f"Shared by all {sum(r.get('n') or 1 for r in rows)} runs: `{' '.join(shared)}`", "", *lines]
    if any(r.get("n") == 1 for r in rows) and any((r.get("n") or 1) > 1 for r in rows):
        lines += ["", "Rows with n = 1 ran with one seed only: repeat them with `seed=0,1,2` before reading a difference."]
    markdown = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(markdown)
    return markdown


def write_html(markdown_lines: list[str], rows: list[dict[str, Any]], columns: list[str], images: list[Path],
               out: Path) -> Path:
    """``compare.html``: the table and the plots in one file that opens without a network (the
    images are embedded)."""
    import base64
    import html

    head = [f"<p>{html.escape(line)}</p>" for line in markdown_lines if line and not line.startswith("|")]
    cells = "".join(f"<th>{html.escape(c.removeprefix('setting '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c), r.get(f'{c} ±')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    pictures = "".join(f'<img alt="{html.escape(p.name)}" src="data:image/png;base64,'
                       f'{base64.b64encode(p.read_bytes()).decode()}">' for p in images if p and p.is_file())
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>genlab-compare</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:48%;margin:1em 1em 0 0}"
            f"</style></head><body><h1>genlab-compare</h1>{''.join(head)}<table id='runs'><tr>{cells}</tr>{body}"
            f"</table>{pictures}</body></html>")
    path = out / "compare.html"
    path.write_text(page)
    return path


def plot_parallel(rows: list[dict[str, Any]], settings: list[str], metric: str, out: Path) -> Path | None:
    """``compare_parallel.png``: one line per row across its numeric settings and the metric, each
    axis scaled to its own range, coloured by the metric (W&B draws the same for its sweeps)."""
    key = f"best {metric}" if any(f"best {metric}" in r for r in rows) else metric
    numeric = [k for k in settings
               if all(isinstance(r.get("settings", {}).get(k), (int, float)) for r in rows)]
    rows = [r for r in rows if isinstance(r.get(key), (int, float))]
    if not numeric or len(rows) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [*numeric, key]
    table = [[float(r["settings"][k]) for k in numeric] + [float(r[key])] for r in rows]
    low = [min(col) for col in zip(*table)]
    high = [max(col) for col in zip(*table)]
    scaled = [[(v - lo) / (hi - lo) if hi > lo else 0.5 for v, lo, hi in zip(line, low, high)] for line in table]
    metric_values = [line[-1] for line in table]
    colours = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(1.8 * len(axes) + 2, 4.5))
    span = (max(metric_values) - min(metric_values)) or 1.0
    for line, value in zip(scaled, metric_values):
        ax.plot(range(len(axes)), line, color=colours((value - min(metric_values)) / span), marker="o")
    ax.set_xticks(range(len(axes)), [a if i < len(numeric) else key for i, a in enumerate(axes)], fontsize=8)
    ax.set_yticks([])
    for i, (lo, hi) in enumerate(zip(low, high)):
        ax.axvline(i, color="#999", linewidth=0.8)
        ax.annotate(f"{hi:.4g}", (i, 1.0), textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.annotate(f"{lo:.4g}", (i, 0.0), textcoords="offset points", xytext=(3, -10), fontsize=7)
    fig.tight_layout()
    path = out / "compare_parallel.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_to_wandb(rows: list[dict[str, Any]], columns: list[str], files: list[Path], project: str, group: str,
                 out: Path) -> str:
    """The table as a W&B run of its own in the sweep's group (job type ``compare``): a
    ``wandb.Table`` under ``compare``, and the files written here as an artifact; the run's files
    go to ``<out>/wandb``. Returns the run's folder. Online when logged in, else offline
    (``WANDB_MODE`` decides, as for training)."""
    import re

    import wandb

    from genlab.utils.wandb_setup import resolve_mode

    run = wandb.init(project=project, group=group, job_type="compare", name=f"compare {group}", dir=str(out),
                     mode=resolve_mode("auto"), settings={"quiet": True})
    table = wandb.Table(columns=[c.removeprefix("setting ") for c in columns],
                        data=[[fmt(r.get(c), r.get(f"{c} ±")) for c in columns] for r in rows])
    run.log({"compare": table})
    artifact = wandb.Artifact(re.sub(r"[^\w.-]", "_", f"compare-{group}"), type="compare")
    for file in files:
        artifact.add_file(str(file))
    run.log_artifact(artifact)
    folder = run.dir
    run.finish()
    return str(Path(folder).parent)


def seed_band(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float, float, float]]:
    """``(step, mean, lowest, highest)`` over the runs' curves, at the steps all have."""
    curves = [dict(c) for c in curves]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return [(s, sum(c[s] for c in curves) / len(curves), min(c[s] for c in curves), max(c[s] for c in curves))
            for s in steps]


def plot(rows: list[dict[str, Any]], metric: str, out: Path) -> Path | None:
    curves = {r["overrides"] or Path(r["run"]).name: seed_band(r.get("curves") or [r.get("curve", [])]) for r in rows}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        steps = [p[0] for p in points]
        line, = ax.plot(steps, [p[1] for p in points], marker="o", markersize=3, label=label[:60])
        if any(p[2] != p[3] for p in points):  # several seeds: their range as a band
            ax.fill_between(steps, [p[2] for p in points], [p[3] for p in points], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "compare.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="a sweep folder (outputs/train/multiruns/<time>) or any folder of runs")
    parser.add_argument("--metric", default="val/elbo", help="sort by this metric (best value over the run)")
    parser.add_argument("--mode", choices=["min", "max"], default="min")
    parser.add_argument("--columns", nargs="+", help="metric columns to show (default: all non-train metrics)")
    parser.add_argument("--out", type=Path, help="where compare.md/.csv/.png go (default: the folder)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from the W&B public API instead")
    parser.add_argument("--group", help="with --wandb: only this group (a sweep folder's name)")
    parser.add_argument("--wandb-files", action="store_true",
                        help="read the offline W&B run files (run-*.wandb) below the folder instead of the run folders")
    parser.add_argument("--per-run", action="store_true", help="one row per run, also for runs that differ only by seed")
    parser.add_argument("--baseline", help="a run folder, or overrides naming one row: each metric's Δ to it")
    parser.add_argument("--log-wandb", action="store_true",
                        help="also log the table and these files to W&B, in the sweep's group (the folder's name)")
    parser.add_argument("--wandb-project", default="genlab", help="with --log-wandb: the W&B project")
    parser.add_argument("--all-settings", action="store_true",
                        help="every key of the runs' configs as a column (default: the settings that differ)")
    args = parser.parse_args(argv)

    if args.wandb:
        rows = wandb_rows(args.wandb, args.group, args.metric, args.mode, args.all_settings)
        out = args.out or Path("outputs") / "compare" / (args.group or "wandb")
    elif args.folder is None or not args.folder.is_dir():
        print(f"genlab-compare: error: {args.folder} is not a folder of runs", file=sys.stderr)
        return 2
    elif args.wandb_files:
        rows = wandb_file_rows(args.folder, args.metric, args.mode, args.all_settings)
        out = args.out or args.folder
    else:
        rows = [read_run(r, args.metric, args.mode, args.all_settings) for r in find_runs(args.folder)]
        out = args.out or args.folder
    if not rows:
        print(f"genlab-compare: error: no runs found under {args.folder or args.wandb}", file=sys.stderr)
        return 2
    if not args.per_run:
        rows = merge_seeds(rows)
    rows = sort_rows(rows, args.metric, args.mode)
    shared = shared_overrides(rows)
    columns = table_columns(rows, args.metric, args.columns)
    settings = sorted({k for r in rows for k in r.get("settings", {})}) if args.all_settings else differing_settings(rows)
    columns = [columns[0], *(f"setting {k}" for k in settings), *columns[1:]]
    if args.baseline:
        deltas = add_baseline(rows, args.baseline,
                              [c for c in columns if c not in ("overrides", "status", "n") and not c.startswith("setting ")])
        columns = [*columns[:-1], *deltas, columns[-1]]
    markdown = write_outputs(rows, columns, out, shared)
    print(markdown)
    png = plot(rows, args.metric, out)
    parallel = plot_parallel(rows, settings, args.metric, out)
    write_html(markdown.splitlines(), rows, columns, [p for p in (png, parallel) if p], out)
    written = [out / "compare.md", out / "compare.csv", out / "compare.html", *(p for p in (png, parallel) if p)]
    print(f"{len(rows)} rows of {sum(r.get('n') or 1 for r in rows)} runs; wrote {', '.join(map(str, written))}")
    if args.log_wandb:
        group = args.group or (args.folder.resolve().name if args.folder else "wandb")
        print(f"Logged to W&B: {log_to_wandb(rows, columns, written, args.wandb_project, group, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Read the records of an offline W&B run file (``run-<id>.wandb``) in tests: genlab's reader,
summarised as tests check it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genlab.utils.wandb_files import records


def summarize(path: Path) -> dict[str, Any]:
    """Config, metric history keys, run info and media count of an offline run file, and whether
    it holds the run's exit record (the last one W&B writes: the file is complete)."""
    config: dict[str, Any] = {}
    history: dict[str, list[Any]] = {}
    run: dict[str, Any] = {}
    exited = False
    for r in records(path):
        kind = r.WhichOneof("record_type")
        exited = exited or kind == "exit"
        if kind == "config":
            for item in r.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(json.loads(item.value_json))
        elif kind == "run":
            # config logged before the run record went out travels inside it
            for item in r.run.config.update:
                config.setdefault(item.key, json.loads(item.value_json))
            run = {"job_type": r.run.job_type, "tags": list(r.run.tags), "project": r.run.project,
                   "group": r.run.run_group, "name": r.run.display_name}
    return {"config": config, "history": history, "run": run, "exited": exited}

"""At the end of a Hydra multirun: which jobs failed, why, and where their logs are."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("genlab.sweep")


def failures(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The ``failure.json`` records of a sweep's jobs, by job number."""
    records = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/failure.json")]
    return sorted(records, key=lambda r: int(r.get("num", 0)))


class SweepReport(Callback):
    """Logs a summary line per failed job and writes ``<sweep dir>/failures.json`` (empty list
    when every job succeeded), so a sweep that went on past failures says so at its end."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        failed = failures(sweep_dir)
        (sweep_dir / "failures.json").write_text(json.dumps(failed, indent=2))
        if not failed:
            log.info("Sweep finished, no job failed: %s", sweep_dir)
            return
        log.error("Sweep finished with %d failed job(s) (details in %s):", len(failed), sweep_dir / "failures.json")
        for record in failed:
            log.error("  job %s (%s): %s; log: %s", record["num"], " ".join(record["overrides"]), record["error"],
                      record["log"])

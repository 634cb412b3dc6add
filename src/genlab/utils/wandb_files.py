"""Offline W&B runs read from their ``run-<id>.wandb`` files, without an account or a network.

W&B's SDK has no reader for these files (``wandb sync`` uploads them; a local reading API is
proposed upstream, wandb/wandb#12745, but not released), so genlab reads the format itself with
W&B's own protobuf ``Record`` class: a 7-byte header (``:W&B``, magic, version), then the
LevelDB log format, 32 KiB blocks of chunks, each chunk with a 7-byte header (checksum,
little-endian length, type: 1 full, 2 first, 3 middle, 4 last); the chunks join into records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32768
HEADER = 7


def records(path: Path) -> Iterator[Any]:
    """The ``wandb.proto.wandb_internal_pb2.Record`` messages of one run file, in order; a chunk
    still being written (a live or killed run) ends the iteration."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if pos + HEADER + length > len(data):
            return
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _flat_items(items: Any) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of a history or summary update; media (nested keys such as
    ``val/samples/_type``) are left out."""
    for item in items:
        if item.key:
            yield item.key, json.loads(item.value_json)
        elif len(item.nested_key) == 1:
            yield item.nested_key[0], json.loads(item.value_json)


def run_files(folder: Path) -> dict[str, list[Path]]:
    """The offline run files below ``folder`` by W&B run id, each run's files in the order they
    were written (a resumed run continues its id in a new ``offline-run-<time>-<id>`` folder),
    the runs in the order they started; W&B's ``latest-run`` link is not counted twice."""
    found: dict[str, set[Path]] = {}
    for path in Path(folder).rglob("run-*.wandb"):
        found.setdefault(path.stem.removeprefix("run-"), set()).add(path.resolve())
    by_run = {run_id: sorted(paths, key=lambda p: p.parent.name) for run_id, paths in found.items()}
    return dict(sorted(by_run.items(), key=lambda item: (item[1][0].parent.name, str(item[1][0]))))


def read_run(paths: list[Path]) -> dict[str, Any]:
    """One run from its files: ``id``, ``name``, ``group``, ``job_type``, ``config`` (nested, as
    logged), ``summary`` (flat keys, the last value of each), ``history`` (``{key: [(step,
    value), ...]}``, steps from Lightning's ``trainer/global_step`` where logged), ``state``
    (``finished``, ``failed`` with an exit code, or ``running`` when the file has no exit record:
    still running, or killed), ``folder`` (the W&B run folder of the last file)."""
    run: dict[str, Any] = {"config": {}, "summary": {}, "history": {}, "state": "running"}
    for path in paths:
        run["state"] = "running"  # what the last file says counts
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(id=record.run.run_id, name=record.run.display_name, group=record.run.run_group,
                           job_type=record.run.job_type)
                for item in record.run.config.update:  # config logged before the run record went out
                    run["config"].setdefault(item.key, json.loads(item.value_json))
            elif kind == "config":
                run["config"].update((item.key, json.loads(item.value_json)) for item in record.config.update)
            elif kind == "summary":
                run["summary"].update(_flat_items(record.summary.update))
            elif kind == "history":
                row = dict(_flat_items(record.history.item))
                step = row.get("trainer/global_step", row.get("_step"))
                for key, value in row.items():
                    run["history"].setdefault(key, []).append((step, value))
            elif kind == "exit":
                run["state"] = "finished" if record.exit.exit_code == 0 else f"failed (exit code {record.exit.exit_code})"
    run["folder"] = str(paths[-1].parent)
    return run

"""Read the records of an offline W&B run file (``run-<id>.wandb``) in tests.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each chunk with
a 7-byte header (crc32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last). The
chunks join into protobuf ``Record`` messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path: Path) -> Iterator[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if pos + HEADER + length > len(data):  # a chunk still being written
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

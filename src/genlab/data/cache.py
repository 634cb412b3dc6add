"""genlab's cache of prepared data: decoded copies that spare each run's start-up the parsing.

Entries are only ever a faster road to what genlab would compute anyway: a missing, stale or
damaged entry is computed again, and a cache that cannot be written only costs that work.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where genlab keeps decoded copies of packaged data: ``$GENLAB_CACHE``, else
    ``$XDG_CACHE_HOME/genlab``, else ``~/.cache/genlab``."""
    if os.environ.get("GENLAB_CACHE"):
        return Path(os.environ["GENLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genlab"


def store(path: Path, write: Callable[[IO[bytes]], None], siblings: str | None = None, keep: int = 1) -> None:
    """Write an entry through ``write(file)`` into a temporary file renamed onto ``path`` (a reader
    never sees half an entry). ``siblings``: a glob in the same folder whose files beyond the
    ``keep`` newest (``path`` among them) are removed, so that entries made stale by a changed
    source or setting do not pile up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, path)
    except OSError as e:
        log.debug("could not cache %s: %s", path, e)
        return
    if siblings is None:
        return
    try:
        entries = sorted(path.parent.glob(siblings), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[keep:]:
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:  # another process removed one first, or the folder is read-only
        log.debug("could not prune the cache in %s: %s", path.parent, e)

"""Weights & Biases set-up, in one place: mode, naming, and always finishing the run."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")


def has_credentials() -> bool:
    """True when W&B can log in without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str | None) -> str:
    """``auto``: ``$WANDB_MODE`` if set, else online with credentials, else offline."""
    if mode in (None, "auto"):
        env = os.environ.get("WANDB_MODE")
        if env:
            return "offline" if env == "dryrun" else env
        return "online" if has_credentials() else "offline"
    if mode not in MODES:
        from genlab.utils.errors import GenlabError

        raise GenlabError(f"logger.wandb.mode={mode!r} is unknown; choose one of {', '.join(MODES)}.")
    return mode


def prepare_wandb_kwargs(kwargs: dict[str, Any], tags: list[str], job_type: str | None) -> dict[str, Any]:
    """Fill in the W&B logger's arguments: resolved mode, job type and tags."""
    kwargs = dict(kwargs)
    kwargs["mode"] = resolve_mode(kwargs.get("mode"))
    kwargs["tags"] = sorted({*(kwargs.get("tags") or []), *(t for t in tags if t)})
    if job_type and not kwargs.get("job_type"):
        kwargs["job_type"] = job_type
    Path(kwargs.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
    return kwargs


def start_or_fall_back(logger: Any, kwargs: dict[str, Any]) -> Any:
    """Start the W&B run now; if W&B cannot be reached or fails in online mode, say so and log
    offline instead (training never stops for W&B). Returns the logger to use."""
    from genlab import compat

    compat.drop_unset_anonymous(logger)
    try:
        logger.experiment  # noqa: B018 - creates the run
        return logger
    except Exception as e:  # network, authentication, server errors ...
        if kwargs.get("mode") != "online":
            raise
        log.warning("W&B online failed (%s: %s); logging offline instead. Upload later with wandb sync.",
                    type(e).__name__, e)
        finish(exit_code=1)
        from hydra.utils import instantiate

        fallback = compat.drop_unset_anonymous(instantiate({**kwargs, "mode": "offline"}))
        fallback.experiment  # noqa: B018
        return fallback


def finish(exit_code: int = 0) -> None:
    """Finish the current W&B run if there is one (also after a failure), and say how to
    upload it when it was logged offline."""
    wandb = sys.modules.get("wandb")  # not imported: no run was started (and importing it is slow)
    if wandb is None:
        return
    run = wandb.run
    if run is None:
        return
    offline = run.settings.mode in ("offline", "dryrun") if hasattr(run.settings, "mode") else False
    run_dir = Path(run.dir).parent if run.dir else None
    wandb.finish(exit_code=exit_code)
    if offline and run_dir is not None:
        log.info("W&B run saved offline; upload it with: wandb sync %s", run_dir)

"""Shared helpers: errors a user can cause, config handling, trainer and W&B set-up."""

from genlab.utils.errors import GenlabError

__all__ = ["GenlabError"]

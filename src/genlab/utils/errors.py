"""Errors that a user can cause and fix (bad config value, missing data, ...)."""


class GenlabError(Exception):
    """A mistake in the user's input, reported as one clear message without a traceback.

    The message names the config key or file at fault and says how to fix it.
    """

"""Errors caused by the user's input. The CLI prints them as one line and exits non-zero."""


class RnnlabError(Exception):
    """Base class: a problem with the user's input (config, data, checkpoint), not a bug."""


class ConfigError(RnnlabError, ValueError):
    """An unknown preset or key, or a value of the wrong type or out of range."""


class DataError(RnnlabError, ValueError):
    """Missing or unusable corpus files."""


class CheckpointError(RnnlabError):
    """A checkpoint that does not exist, does not load, or does not match what is asked of it."""

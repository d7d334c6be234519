"""rnnlab's errors. The CLI prints each as one line: exit code 2 for bad input (ConfigError, DataError,
CheckpointError), 1 for any other RnnlabError (a failure while running, such as a diverged loss)."""


class RnnlabError(Exception):
    """Base class: a problem the user can act on (their input, or a run that failed), not a bug."""


class ConfigError(RnnlabError, ValueError):
    """An unknown preset or key, or a value of the wrong type or out of range."""


class DataError(RnnlabError, ValueError):
    """Missing or unusable corpus files."""


class CheckpointError(RnnlabError):
    """A checkpoint that does not exist, does not load, or does not match what is asked of it."""

"""User-facing errors.

A ``BiFairError`` carries a message meant for the person running the command: it names the
file or config key at fault and says how to fix it. The command-line entry points print it on
stderr without a traceback (``--debug`` shows one).
"""


class BiFairError(Exception):
    """An error caused by the user's input (config, data, files), not by a bug."""


class ConfigError(BiFairError):
    """A config file, config key or command-line override is missing or malformed."""


class DataError(BiFairError):
    """A dataset or feature file is missing, unreachable or inconsistent."""

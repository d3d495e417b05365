"""Exceptions that reach the user as one clear line (see ``segkit.cli``)."""


class SegkitError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback."""


class ConfigError(SegkitError):
    """A config file or ``--set`` override is invalid."""


class UnknownNameError(SegkitError, KeyError):
    """A name is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(SegkitError):
    """An input file or dataset is missing, unreadable or inconsistent."""


class CheckpointError(SegkitError):
    """A checkpoint is missing, incomplete or does not match the model."""


class TrainingError(SegkitError):
    """Training cannot go on (e.g. the weights diverged to NaN or infinity)."""

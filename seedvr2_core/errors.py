"""Typed errors raised by the core. Nodes and the CLI let them surface unchanged.

Every message names the file or value at fault and says what to do about it.
"""


class SeedVR2Error(Exception):
    """Base class of every error the core raises on purpose."""


class CheckpointError(SeedVR2Error):
    """A model file cannot be read: missing, truncated, corrupt, or unsafe to unpickle."""


class UnsupportedCheckpointError(CheckpointError):
    """A readable model file that is not the model that was asked for (wrong model, wrong variant)."""


class StateDictMismatchError(CheckpointError):
    """A checkpoint of the right family whose keys or shapes do not match the model built for it."""


class ConfigError(SeedVR2Error, ValueError):
    """An unknown or invalid configuration field or value."""


class InputError(SeedVR2Error, ValueError):
    """Input frames, sizes or options that cannot be processed as given."""


class MemoryPlanError(SeedVR2Error):
    """No plan fits the memory budget; the message says the smallest plan and the memory it needs."""


class ProcessingInterrupted(SeedVR2Error):
    """Processing was cancelled by the user (host interrupt or Ctrl-C)."""

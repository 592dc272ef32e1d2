"""SeedVR2 one-step video restoration: the host-independent core of the node pack.

Public API (documented in README.md): `load_dit`, `partition_windows`, `DiTConfig`, `DIT_CONFIGS`.
"""

from .config import DIT_CONFIGS, DiTConfig, make_dit_config
from .dit import NaDiT, load_dit, partition_windows
from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    SeedVR2Error,
    StateDictMismatchError,
    UnsupportedCheckpointError,
)

__all__ = [
    "DIT_CONFIGS",
    "CheckpointError",
    "ConfigError",
    "DiTConfig",
    "InputError",
    "NaDiT",
    "SeedVR2Error",
    "StateDictMismatchError",
    "UnsupportedCheckpointError",
    "load_dit",
    "make_dit_config",
    "partition_windows",
]

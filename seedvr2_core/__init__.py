"""SeedVR2 one-step video restoration: the host-independent core of the node pack.

Public API (documented in README.md): `load_dit`, `partition_windows`, `DiTConfig`, `DIT_CONFIGS`,
`color_fix`, `SizeRequest`, `SizePlan`, `plan_size` (tensor helpers for a plan: `seedvr2_core.transforms`),
`BlockSwapper` (low VRAM), `on_device` / `ModuleResidency` (models taking turns on the GPU), `InterruptObserver`.
"""

from .color import COLOR_METHODS, color_fix
from .config import DIT_CONFIGS, DiTConfig, make_dit_config
from .dit import NaDiT, load_dit, partition_windows
from .dit.observers import InterruptObserver
from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    SeedVR2Error,
    StateDictMismatchError,
    UnsupportedCheckpointError,
)
from .offload import BlockSwapper
from .residency import ModuleResidency, on_device
from .sizing import SizePlan, SizeRequest, plan_size

__all__ = [
    "COLOR_METHODS",
    "DIT_CONFIGS",
    "BlockSwapper",
    "CheckpointError",
    "ConfigError",
    "DiTConfig",
    "InputError",
    "InterruptObserver",
    "ModuleResidency",
    "NaDiT",
    "SeedVR2Error",
    "SizePlan",
    "SizeRequest",
    "StateDictMismatchError",
    "UnsupportedCheckpointError",
    "color_fix",
    "load_dit",
    "make_dit_config",
    "on_device",
    "partition_windows",
    "plan_size",
]

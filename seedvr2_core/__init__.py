"""SeedVR2 one-step video restoration: the host-independent core of the node pack.

Public API (documented in README.md):
* models: `load_dit`, `load_vae`, `NaDiT`, `VideoAutoencoder`, `VAETiling`, `partition_windows`,
  configs `DiTConfig`, `DIT_CONFIGS`, `VAEConfig`, `VAE_CONFIGS`, `estimate_vae_cost`;
* restoration: `restore`, `restore_stream`, `RestoreOptions`, `color_fix`, `SizeRequest`, `SizePlan`,
  `plan_size` (tensor helpers for a plan: `seedvr2_core.transforms`);
* low VRAM: `BlockSwapper`, `on_device` / `ModuleResidency` (models taking turns on the GPU),
  `InterruptObserver`;
* memory plan: `MemoryOptions` (and `parse_budget`, `parse_blocks_to_swap`, `parse_vae_tile`,
  `parse_dit_batch` for text), `Runtime` (the phases under a plan: pass it to `restore_stream`), `MemoryPlan`,
  `MemoryPlanError`.
"""

from .color import COLOR_METHODS, color_fix
from .config import DIT_CONFIGS, VAE_CONFIGS, DiTConfig, VAEConfig, make_dit_config, make_vae_config
from .dit import NaDiT, load_dit, partition_windows
from .dit.observers import InterruptObserver
from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    MemoryPlanError,
    SeedVR2Error,
    StateDictMismatchError,
    UnsupportedCheckpointError,
)
from .memory_options import MemoryOptions, parse_blocks_to_swap, parse_budget, parse_dit_batch, parse_vae_tile
from .memory_plan import MemoryPlan
from .offload import BlockSwapper
from .pipeline import RestoreOptions, restore, restore_stream
from .runtime import Runtime
from .residency import ModuleResidency, on_device
from .sizing import SizePlan, SizeRequest, plan_size
from .vae import VAETiling, VideoAutoencoder, estimate_vae_cost, load_vae

__all__ = [
    "COLOR_METHODS",
    "DIT_CONFIGS",
    "VAE_CONFIGS",
    "BlockSwapper",
    "CheckpointError",
    "ConfigError",
    "DiTConfig",
    "InputError",
    "InterruptObserver",
    "MemoryOptions",
    "MemoryPlan",
    "MemoryPlanError",
    "ModuleResidency",
    "NaDiT",
    "RestoreOptions",
    "Runtime",
    "SeedVR2Error",
    "SizePlan",
    "SizeRequest",
    "StateDictMismatchError",
    "UnsupportedCheckpointError",
    "VAEConfig",
    "VAETiling",
    "VideoAutoencoder",
    "color_fix",
    "estimate_vae_cost",
    "load_dit",
    "load_vae",
    "make_dit_config",
    "make_vae_config",
    "on_device",
    "parse_blocks_to_swap",
    "parse_budget",
    "parse_dit_batch",
    "parse_vae_tile",
    "partition_windows",
    "plan_size",
    "restore",
    "restore_stream",
]

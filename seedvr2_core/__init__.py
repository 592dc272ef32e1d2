"""SeedVR2 one-step video restoration: the host-independent core of the node pack.

Public API (documented in README.md): `load_dit`, `partition_windows`, `DiTConfig`, `DIT_CONFIGS`,
`load_vae`, `VideoAutoencoder`, `VAETiling`, `VAEConfig`, `VAE_CONFIGS`, `estimate_vae_cost`.
"""

from .config import DIT_CONFIGS, VAE_CONFIGS, DiTConfig, VAEConfig, make_dit_config, make_vae_config
from .dit import NaDiT, load_dit, partition_windows
from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    SeedVR2Error,
    StateDictMismatchError,
    UnsupportedCheckpointError,
)
from .vae import VAETiling, VideoAutoencoder, estimate_vae_cost, load_vae

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
    "VAEConfig",
    "VAETiling",
    "VAE_CONFIGS",
    "VideoAutoencoder",
    "estimate_vae_cost",
    "load_dit",
    "load_vae",
    "make_dit_config",
    "make_vae_config",
    "partition_windows",
]

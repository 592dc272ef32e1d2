"""`load_vae`: build the video VAE for a checkpoint and fill it strictly through the weights module.

Accepted files: the official `ema_vae.pth` and repackaged `ema_vae_fp16.safetensors`-style files with the
official key names (FACTS.md section 1; `manifests/vae.json` lists the 250 expected tensors). Unlike the
official loader (non-strict, FACTS.md 8.4), any missing, unexpected or mis-shaped key is an error.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from ..config import VAE_CONFIGS, VAEConfig, make_vae_config
from ..dit.loader import metadata_config
from ..errors import ConfigError, UnsupportedCheckpointError
from ..weights.detect import describe
from ..weights.loading import compute_dtype_policy, materialize
from ..weights.sources import open_source
from .model import VideoAutoencoder

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resolve_vae_config(source, config: str | VAEConfig | Mapping[str, Any] | None) -> VAEConfig:
    """The config for `source`: official, then the file's `seedvr2_config` metadata, then `config` on top."""
    kind = describe(source)
    if kind != "seedvr2-vae":
        what = "a SeedVR2 DiT" if kind == "seedvr2-dit" else kind
        raise UnsupportedCheckpointError(
            f"{source.path} looks like {what}, not the SeedVR2 video VAE (expected 3-D conv keys such as "
            "encoder.conv_in.weight and decoder.conv_out.weight). Pick ema_vae.pth or ema_vae_fp16.safetensors."
        )
    if isinstance(config, VAEConfig):
        return config
    if isinstance(config, str):
        if config not in VAE_CONFIGS:
            raise UnsupportedCheckpointError(f"unknown VAE variant {config!r}; known: {', '.join(VAE_CONFIGS)}")
        return VAE_CONFIGS[config]
    return make_vae_config({**metadata_config(source), **dict(config or {})})


def load_vae(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    config: str | VAEConfig | Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> VideoAutoencoder:
    """VideoAutoencoder filled from a checkpoint path or state dict, computing in `dtype` on `device`.

    `config`: None (official, or the file's metadata), "seedvr2-vae", a VAEConfig, or a mapping of
    official field names (as in golden/vae_tiny.json) for non-official sizes.
    """
    if dtype not in SUPPORTED_DTYPES:
        raise ConfigError(f"VAE dtype {dtype} is not supported; use one of {SUPPORTED_DTYPES}")
    reader = open_source(source)
    try:
        cfg = resolve_vae_config(reader, config)
        with torch.device("meta"):
            vae = VideoAutoencoder(cfg)
        what = "the SeedVR2 video VAE" + ("" if cfg == VAE_CONFIGS["seedvr2-vae"] else " (custom config)")
        materialize(vae, reader, what, device, compute_dtype_policy(dtype))
        vae.compute_dtype = dtype
        vae.source_path = reader.path
    finally:
        reader.close()
    return vae

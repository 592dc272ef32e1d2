"""Loaded models as the nodes pass them around: the model, where it computes, and its run settings.

`open_dit` / `open_vae` take a file name from the SEEDVR2 model folder (resolved by the host adapter,
never joined to a path here), load the weights to the host's offload device (host memory, normally)
and give the host a handle to move them to and from the compute device (`placement.Placement`,
wrapped by `host.wrap_model` so that ComfyUI can unload them when another model needs the memory).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from . import host
from .attention import resolve_backend
from .dit import NaDiT, load_dit
from .errors import ConfigError
from .placement import Placement
from .text import find_text_embedding
from .vae import VAETiling, VideoAutoencoder, load_vae

log = logging.getLogger(__name__)

DTYPES = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Compute dtype for a dtype widget value ("auto": what the host picks for `device`)."""
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[name] or host.default_dtype(device)


@dataclass(eq=False)
class DiTHandle:
    """SEEDVR2_DIT: the DiT, its text embedding (L, txt_in_dim) and its placement."""

    model: NaDiT
    text: torch.Tensor
    placement: Placement
    name: str

    def describe(self) -> str:
        cfg = self.model.config
        swap = "auto" if self.placement.blocks_to_swap is None else self.placement.blocks_to_swap
        return (f"SeedVR2 DiT {self.name}: {cfg.num_layers} blocks, width {cfg.vid_dim}, "
                f"{self.placement.dtype} on {self.placement.device}, blocks to swap {swap}")


@dataclass(eq=False)
class VAEHandle:
    """SEEDVR2_VAE: the video VAE, its placement, and its tiling (None: planned from free memory per run)."""

    model: VideoAutoencoder
    placement: Placement
    tiling: VAETiling | None
    name: str

    def describe(self) -> str:
        tiling = "auto" if self.tiling is None else self.tiling
        return f"SeedVR2 VAE {self.name}: {self.placement.dtype} on {self.placement.device}, tiling {tiling}"


def _placement(model, dtype: torch.dtype, blocks_to_swap: int | None) -> Placement:
    placement = Placement(model, host.compute_device(), host.offload_device(), dtype, blocks_to_swap)
    placement.patcher = host.wrap_model(placement)
    return placement


def open_dit(name: str, dtype: str = "auto", attention: str = "auto", blocks_to_swap: int | None = None) -> DiTHandle:
    """The DiT file `name` of the model folder, loaded to the offload device, with its text embedding.

    blocks_to_swap: None picks the number from the memory the host grants (see placement.py).
    """
    path = host.model_path(name)
    device, home = host.compute_device(), host.offload_device()
    compute = resolve_dtype(dtype, device)
    try:
        resolve_backend(attention, device)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(str(e)) from None
    host.request_memory(os.path.getsize(path), home)
    model = load_dit(path, device=home, dtype=compute, attention=attention)
    text = find_text_embedding([os.path.dirname(path), *host.model_folders()], model)
    handle = DiTHandle(model, text, _placement(model, compute, blocks_to_swap), name)
    log.info("%s", handle.describe())
    return handle


def open_vae(name: str, dtype: str = "auto", tiling: VAETiling | None = None) -> VAEHandle:
    """The VAE file `name` of the model folder, loaded to the offload device."""
    path = host.model_path(name)
    device, home = host.compute_device(), host.offload_device()
    compute = resolve_dtype(dtype, device)
    host.request_memory(os.path.getsize(path), home)
    model = load_vae(path, device=home, dtype=compute)
    handle = VAEHandle(model, _placement(model, compute, 0), tiling, name)
    log.info("%s", handle.describe())
    return handle

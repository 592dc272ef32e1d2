"""Leaf tensor helpers shared by the VAE modules."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch
import torch.nn.functional as F

CL3D = torch.channels_last_3d


def conv3d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride=(1, 1, 1), padding=(0, 0, 0)):
    """F.conv3d, forced onto oneDNN on CPU: PyTorch's size heuristic sends small batch-1 inputs (latent-sized
    frames, 1x1x1 kernels) to a much slower reference kernel."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(x, w, b, list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, w, b, stride, padding)


def empty_cl(like: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=CL3D)


def _libc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _libc_trim()


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only).

    Tile-sized tensors come from glibc's heap, which keeps freed blocks resident; without this, a tiled
    call's resident memory grows by a few hundred MB of blocks it no longer uses.
    """
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)

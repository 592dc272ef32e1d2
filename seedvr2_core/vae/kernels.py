"""Leaf tensor helpers shared by the VAE modules."""

from __future__ import annotations

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

"""Random weights in the official layout, for tests, benchmarks and trying workflows without models.

Initialisation keeps activations in a sane range at any width and depth (like the golden tiny models):
matrices ~ N(0, 1/fan_in); norm weights and modulation scales ~ 1 + 0.2 N; other vectors ~ 0.1 N.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from .weights.safetensors_file import write_safetensors

SCALE_SUFFIXES = ("norm.weight", "norm_q.vid.weight", "norm_q.txt.weight", "norm_q.all.weight",
                  "norm_k.vid.weight", "norm_k.txt.weight", "norm_k.all.weight", "_scale",
                  "norm1.weight", "norm2.weight", "group_norm.weight", "norm_out.weight")


def random_tensor(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A float32 tensor of `shape` initialised by the rules above for parameter `key`."""
    x = torch.randn(shape, generator=generator, device="cpu")
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return x.mul_(1.0 / math.sqrt(fan_in))
    if key.endswith(SCALE_SUFFIXES):
        return x.mul_(0.2).add_(1.0)
    return x.mul_(0.1)


def random_state_dict(module: nn.Module, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random tensors for every state-dict entry of `module` (which may live on the meta device)."""
    g = torch.Generator().manual_seed(seed)
    return {k: random_tensor(k, tuple(v.shape), g).to(dtype) for k, v in module.state_dict().items()}


def write_random_checkpoint(
    module: nn.Module, path: str | os.PathLike, dtype: torch.dtype = torch.float16, seed: int = 0,
    metadata: dict[str, str] | None = None,
) -> int:
    """Stream a random checkpoint of `module`'s layout to a safetensors file; returns its size in bytes."""
    g = torch.Generator().manual_seed(seed)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    write_safetensors(path, {k: (dtype, s) for k, s in shapes.items()}, lambda k: random_tensor(k, shapes[k], g), metadata)
    return os.path.getsize(path)

"""Attention kernels behind one interface, with availability predicates.

Every backend computes plain non-causal softmax attention with scale 1/sqrt(D) over a list of
independent sequences. `sdpa` (PyTorch's `scaled_dot_product_attention`, batched over sequences of
equal length) is the reference and runs everywhere; `flash_attn` (flash-attn's varlen kernel) and
`sage` (SageAttention's varlen kernel) need CUDA and their packages. The official model calls flash-attn
with q, k, v cast to bfloat16 (FACTS.md section 2.6); `cast_qkv_bf16` reproduces that on any backend.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    is_available: Callable[[torch.device], bool]
    varlen: bool  # takes packed sequences + cu_seqlens instead of a dense batch


def _cuda_with(package: str) -> Callable[[torch.device], bool]:
    return lambda device: device.type == "cuda" and _has_module(package)


BACKENDS = {
    "sdpa": AttentionBackend("sdpa", lambda device: True, varlen=False),
    "flash_attn": AttentionBackend("flash_attn", _cuda_with("flash_attn"), varlen=True),
    "sage": AttentionBackend("sage", _cuda_with("sageattention"), varlen=True),
}


def available_backends(device: torch.device | str) -> list[str]:
    device = torch.device(device)
    return [name for name, b in BACKENDS.items() if b.is_available(device)]


def resolve_backend(name: str, device: torch.device | str) -> AttentionBackend:
    """The backend called `name` ("auto" picks flash_attn when usable, else sdpa)."""
    device = torch.device(device)
    if name == "auto":
        return BACKENDS["flash_attn"] if BACKENDS["flash_attn"].is_available(device) else BACKENDS["sdpa"]
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    if not backend.is_available(device):
        package = {"flash_attn": "flash-attn", "sage": "sageattention"}.get(name, name)
        raise RuntimeError(
            f"attention backend {name!r} is not usable on {device}: it needs CUDA and `pip install {package}`. "
            "Choose 'auto' or 'sdpa'."
        )
    return backend


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q, k, v (B, L, H, D) -> (B, L, H, D)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def varlen_attention(
    backend: AttentionBackend, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int
) -> torch.Tensor:
    """Packed q, k, v (total, H, D) with sequence boundaries cu_seqlens (int32) -> (total, H, D)."""
    if backend.name == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len)
    if backend.name == "sage":
        from sageattention import sageattn_varlen

        return sageattn_varlen(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len)
    raise ValueError(f"{backend.name} is not a varlen backend")

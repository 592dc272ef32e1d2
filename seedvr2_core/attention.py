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


# PyTorch's CPU flash kernel works in query blocks of 32 or 64 rows and key blocks of up to 512. Short
# sequences whose length is not a multiple of 32 leave its small matmuls ragged and run 1.3 to 2.5x
# slower; padded to the next multiple of 32 with the padding keys masked out, the attention is exactly
# the same and faster (benchmarks/cpu_attention.py, bfloat16: 122 tokens 0.41x the time, 186 0.59x,
# 250 0.64x, 378 0.75x). Past 384 tokens the gain is mixed (0.77x to 1.19x) and from 512 on there is
# none, so longer sequences run as they are.
CPU_ALIGN = 32
CPU_PAD_UP_TO = 384


def dense_length(length: int, device: torch.device | str) -> int:
    """The length `dense_attention` runs sequences of `length` tokens at (padding keys masked out)."""
    padded = -(-length // CPU_ALIGN) * CPU_ALIGN
    return padded if torch.device(device).type == "cpu" and padded <= CPU_PAD_UP_TO else length


def key_padding_mask(length: int, padded: int, device: torch.device | str) -> torch.Tensor | None:
    """Additive float32 mask (1, 1, 1, padded) that hides keys from `length` on; None if nothing is padded."""
    if padded == length:
        return None
    mask = torch.zeros(1, 1, 1, padded, device=device)
    mask[..., length:] = float("-inf")
    return mask


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """q, k, v (B, L, H, D) -> (B, L, H, D); `mask` is added to the scores (see `key_padding_mask`)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
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

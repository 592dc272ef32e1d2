"""Strict, one-tensor-at-a-time loading of a reader into a module built on the meta device."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import StateDictMismatchError

# dtype_for(key, stored dtype, ndim) -> dtype to hold the tensor in (None: keep the stored dtype)
DtypePolicy = Callable[[str, torch.dtype, int], "torch.dtype | None"]


def compute_dtype_policy(dtype: torch.dtype) -> DtypePolicy:
    """Matrices in `dtype`; vectors (biases, norm weights, modulation offsets) in float32."""

    def policy(key: str, stored: torch.dtype, ndim: int) -> torch.dtype | None:
        if not stored.is_floating_point:
            return None
        return torch.float32 if ndim <= 1 else dtype

    return policy


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_keys(module: nn.Module, source, what: str, recomputed: set[str] = frozenset()) -> None:
    """Raise StateDictMismatchError naming every missing, unexpected and mis-shaped key."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    present = set(source.keys())
    missing = [k for k in expected if k not in present and k not in recomputed]
    unexpected = sorted(k for k in present if k not in expected)
    shapes = [
        f"{k} {list(source.shape(k))} (expected {list(expected[k])})"
        for k in expected
        if k in present and tuple(source.shape(k)) != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} tensors of the wrong shape: {_listing(shapes, 6)}")
    raise StateDictMismatchError(
        f"{source.path} does not match {what}: " + "; ".join(parts) + ". "
        "The file is damaged, from another model, or needs a different config."
    )


def _assign(module: nn.Module, key: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = key.rpartition(".")
    owner = module.get_submodule(owner_name)
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    else:
        owner._buffers[leaf] = tensor


def materialize(
    module: nn.Module,
    source,
    what: str,
    device: torch.device | str,
    dtype_for: DtypePolicy,
    recomputed: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Fill a meta-device `module` from `source` strictly, one tensor at a time.

    `recomputed` tensors (derived buffers such as RoPE frequencies) replace whatever the file holds.
    """
    recomputed = recomputed or {}
    check_keys(module, source, what, set(recomputed))
    for key, meta in module.state_dict(keep_vars=True).items():
        if key in recomputed:
            tensor = recomputed[key].to(device)
        else:
            stored = source.dtype(key)
            tensor = source.get(key, device, dtype_for(key, stored, meta.ndim))
        _assign(module, key, tensor)
    return module.requires_grad_(False).eval()

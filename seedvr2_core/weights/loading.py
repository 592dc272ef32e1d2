"""Strict, one-tensor-at-a-time loading of a reader into a module built on the meta device.

Storage policy: fp8 and GGML block-quantised matrices stay in their stored form in memory and are
up-cast / decoded one layer at a time when used (`ops.cast_weight`); other float matrices take the
compute dtype; vectors (biases, norm weights, modulation offsets) are held in float32.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import StateDictMismatchError

# dtype_for(key, stored, ndim) -> dtype to hold the tensor in (None: keep it as stored). `stored` is
# the stored torch dtype, or the GGML block format name ("Q4_K", ...) of a block-quantised tensor.
DtypePolicy = Callable[[str, "torch.dtype | str", int], "torch.dtype | None"]

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def compute_dtype_policy(dtype: torch.dtype) -> DtypePolicy:
    """fp8 / quantised matrices as stored, other float matrices in `dtype`, vectors in float32."""

    def policy(key: str, stored: torch.dtype | str, ndim: int) -> torch.dtype | None:
        if isinstance(stored, str):
            return torch.float32 if ndim <= 1 else None
        if not stored.is_floating_point:
            return None
        if ndim <= 1:
            return torch.float32
        return None if stored in FP8_DTYPES else dtype

    return policy


def stored_kind(source, key: str) -> torch.dtype | str:
    """What a DtypePolicy sees as `stored`: the block format name of a quantised tensor, else its dtype."""
    quant_type = getattr(source, "quant_type", None)
    return (quant_type(key) if quant_type else None) or source.dtype(key)


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _non_float(module: nn.Module, source, present: set[str]) -> list[tuple[str, torch.dtype]]:
    """(key, stored dtype) of the file's tensors that fill a float parameter but are not floats (casting
    them would load integer-valued garbage); block-quantised tensors are floats in disguise."""
    found = []
    for key, meta in module.state_dict(keep_vars=True).items():
        stored = stored_kind(source, key) if key in present else None
        if isinstance(stored, torch.dtype) and meta.is_floating_point() and not stored.is_floating_point:
            found.append((key, stored))
    return found


def check_keys(module: nn.Module, source, what: str, recomputed: set[str] = frozenset()) -> None:
    """Raise StateDictMismatchError naming every missing, unexpected, mis-shaped and non-float key."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    present = set(source.keys())
    missing = [k for k in expected if k not in present and k not in recomputed]
    unexpected = sorted(k for k in present if k not in expected)
    shapes = [
        f"{k} {list(source.shape(k))} (expected {list(expected[k])})"
        for k in expected
        if k in present and tuple(source.shape(k)) != expected[k]
    ]
    dtypes = [f"{k} ({stored})" for k, stored in _non_float(module, source, present)]
    if not (missing or unexpected or shapes or dtypes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} tensors of the wrong shape: {_listing(shapes, 6)}")
    if dtypes:
        parts.append(f"{len(dtypes)} weights stored as integers or booleans: {_listing(dtypes, 6)}")
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
            tensor = source.get(key, device, dtype_for(key, stored_kind(source, key), meta.ndim))
        _assign(module, key, tensor)
    return module.requires_grad_(False).eval()

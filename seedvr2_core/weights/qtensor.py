"""`QuantizedTensor`: GGML block bytes that stay quantised wherever the model moves them.

A quantised weight lives in a module's parameter slot as its raw bytes (1-D uint8), so moving the
model or one block between devices (`.to`, `.cuda()`, `.pin_memory()`, `nn.Module.to`, block
swapping) moves the small quantised bytes. Layers turn it into a computable tensor one layer at a
time through `ops.cast_weight`, which calls `dequantize_as(dtype, device)`.

The subclass stays deliberately small: a handful of copy-like operations keep the quant type and
logical shape; every other torch operation sees plain uint8 bytes and returns plain tensors, and
casting the bytes to a float dtype with `.to` raises instead of producing meaningless numbers.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from .dequant import BLOCK_SIZES, dequantize, quantized_nbytes

# Operations whose result is the same bytes (moved, copied or re-flagged): they keep the quant info.
_PRESERVING = frozenset({
    torch.Tensor.to,
    torch.Tensor.cpu,
    torch.Tensor.cuda,
    torch.Tensor.pin_memory,
    torch.Tensor.detach,
    torch.Tensor.clone,
    torch.Tensor.contiguous,
    torch.Tensor.requires_grad_,
    torch.Tensor.share_memory_,
    torch.Tensor.data.__get__,
})
# Shortcut casts that would turn the bytes into meaningless numbers.
_REFUSED = frozenset({torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16, torch.Tensor.double})


class QuantizedTensor(torch.Tensor):
    """Raw GGML blocks (n_bytes,) uint8 with `qtype` ("Q4_K", ...) and `logical_shape` (what they decode to)."""

    qtype: str
    logical_shape: torch.Size

    @staticmethod
    def __new__(cls, raw: torch.Tensor, qtype: str, logical_shape: Sequence[int]) -> "QuantizedTensor":
        if qtype not in BLOCK_SIZES:
            raise ValueError(f"unknown block format {qtype!r}; known: {', '.join(BLOCK_SIZES)}")
        shape = torch.Size(logical_shape)
        if raw.dtype != torch.uint8 or raw.dim() != 1 or raw.numel() != quantized_nbytes(qtype, shape.numel()):
            raise ValueError(f"{qtype} bytes for shape {list(shape)} must be 1-D uint8, got {raw.dtype} {list(raw.shape)}")
        return cls._wrap(raw, qtype, shape)

    @classmethod
    def _wrap(cls, raw: torch.Tensor, qtype: str, shape: torch.Size) -> "QuantizedTensor":
        t = torch.Tensor._make_subclass(cls, raw, False)
        t.qtype, t.logical_shape = qtype, shape
        return t

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        src = args[0] if args else None
        if func in _REFUSED and isinstance(src, cls):
            raise cls._cast_error(src, func.__name__)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        if func not in _PRESERVING or not isinstance(src, cls) or not isinstance(out, torch.Tensor) or isinstance(out, cls):
            return out
        if out.dtype != torch.uint8:
            raise cls._cast_error(src, f"to({out.dtype})")
        return cls._wrap(out, src.qtype, src.logical_shape)

    @staticmethod
    def _cast_error(src: "QuantizedTensor", what: str) -> TypeError:
        return TypeError(f"a {src.qtype} quantised tensor cannot be cast with .{what}: "
                         "call dequantize_as(dtype, device) (or ops.cast_weight) instead")

    def raw_bytes(self) -> torch.Tensor:
        """The blocks as a plain (n_bytes,) uint8 tensor sharing this tensor's memory."""
        return self.as_subclass(torch.Tensor)

    def dequantize_as(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """A plain `logical_shape` tensor of `dtype`, decoded on `device` (default: where the bytes are)."""
        raw = self.raw_bytes()
        if device is not None:
            raw = raw.to(device, non_blocking=True)  # only the quantised bytes travel
        return dequantize(raw, self.qtype, self.logical_shape, dtype)

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        new = type(self)._wrap(self.raw_bytes().clone(), self.qtype, self.logical_shape)
        new.__dict__.update(copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in ("qtype", "logical_shape")}, memo))
        memo[id(self)] = new
        return new

    def __repr__(self, *, tensor_contents=None) -> str:
        return (f"QuantizedTensor({self.qtype}, logical_shape={list(self.logical_shape)}, "
                f"{self.numel()} bytes, device={self.device})")

"""Layers whose stored weights may differ in dtype from the activations.

Weights can be kept in a storage dtype (fp8, a quantised GGUF block format, or fp32 for small vectors)
and are cast to the activations' dtype at use, one layer at a time. `cast_weight` is the one place
that knows how to turn a stored weight into a computable tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cast_weight(w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """`w` as a plain tensor of `like`'s dtype and device (dequantising if it is stored quantised)."""
    if w is None:
        return None
    dequantize = getattr(w, "dequantize_as", None)
    if dequantize is not None:
        return dequantize(like.dtype, like.device)
    if w.device != like.device:
        w = w.to(like.device, non_blocking=True)  # move the stored (e.g. fp8) form, widen it on arrival
    return w if w.dtype == like.dtype else w.to(like.dtype)


class Linear(nn.Linear):
    """`nn.Linear` that computes in the input's dtype whatever dtype its weights are stored in."""

    # While `cpu_pack.packed_linears` runs: a oneDNN-packed copy of the weight, and the bias in its dtype.
    packed: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        # Weights always come from a checkpoint (or an explicit initialiser); skip the costly default init.
        pass

    def packed_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(packed weight, bias) if there is a packed copy that computes with x (CPU, same dtype, 2-d)."""
        p = self.packed
        return p if p is not None and x.device.type == "cpu" and x.dtype == p[0].dtype and x.dim() == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.packed_for(x)
        if packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, *packed, "none", [], "")
        return F.linear(x, cast_weight(self.weight, x), cast_weight(self.bias, x))

    def forward_into(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """forward(x) written into `out` (rows of a larger packed tensor), saving a copy; a new tensor when
        `out` is None. x: (N, in)."""
        if out is None or self.packed_for(x) is not None:
            y = self.forward(x)
            return y if out is None else out.copy_(y)  # the packed kernel has no out= form
        w = cast_weight(self.weight, x)
        if self.bias is None:
            return torch.mm(x, w.t(), out=out)
        return torch.addmm(cast_weight(self.bias, x), x, w.t(), out=out)


_EPS: dict[tuple[float, torch.device], torch.Tensor] = {}


def inverse_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / sqrt(mean(x**2, last dim) + eps), float32, keepdim: the mean square accumulated in float32.

    Three operations (norm, fused square-scale-add, rsqrt): this runs on small row steps, many times a block.
    """
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
    key = (eps, x.device)
    if key not in _EPS:
        _EPS[key] = torch.tensor(eps, dtype=torch.float32, device=x.device)
    return torch.addcmul(_EPS[key], norm, norm, value=1.0 / x.shape[-1], out=norm).rsqrt_()


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm over the last dim: the mean square is accumulated in float32; the result has x's dtype.

    One fused reduction (vector_norm) and one scaling pass: about twice as fast on CPU as
    F.rms_norm, which materialises x**2.
    """
    inv = inverse_rms(x, eps).to(x.dtype)
    y = torch.mul(x, inv, out=out) if out is not None else x * inv
    if weight is not None:
        y.mul_(cast_weight(weight, y))
    return y


class RMSNorm(nn.Module):
    """RMSNorm with an optional learned weight (official names: `weight`)."""

    def __init__(self, dim: int, eps: float, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

"""Quantising float tensors to GGML block formats, for the converter.

Q8_0 uses the `gguf` package's quantiser (bit-exact with ggml's reference). The `gguf` package has
no Q4_K quantiser, so Q4_K is ours: block layout as in `dequant.py` (per 256 values: float16 d and
dmin, eight 6-bit scales and mins, 4-bit values; value = d*sc*q - dmin*m). Each 32-value sub-block
gets the (scale, offset) that minimises its squared error over a few candidate ranges (least-squares
refit after each rounding); the super-block then stores those as 6-bit multiples of float16 d and
dmin, and the 4-bit values are re-rounded against the stored parameters.
"""

from __future__ import annotations

import numpy as np
import torch

# Range stretches tried per sub-block: rounding step = (max - min) / (15 + r).
Q4_K_STRETCHES = tuple(r / 10 for r in range(-9, 10, 2))


def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    """x (numel multiple of 32) float -> (numel / 32 * 34,) uint8 Q8_0 blocks (ggml's rounding)."""
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import quantize

    rows = x.detach().to("cpu", torch.float32).reshape(-1, 32).numpy()
    return torch.from_numpy(np.ascontiguousarray(quantize(rows, GGMLQuantizationType.Q8_0))).reshape(-1)


def _least_squares(q: torch.Tensor, x: torch.Tensor, sx: torch.Tensor, sxx: torch.Tensor):
    """Best (s, b) with x ~ s*q + b, b <= 0, s >= 0, per row of q, x (..., 32), and its squared error."""
    n = q.shape[-1]
    sq, sqq, sqx = q.sum(-1), (q * q).sum(-1), (q * x).sum(-1)
    det = n * sqq - sq * sq
    ok = det > 0
    safe = torch.where(ok, det, 1.0)
    s = torch.where(ok, (n * sqx - sq * sx) / safe, 0.0)
    b = torch.where(ok, (sqq * sx - sq * sqx) / safe, sx / n)
    # An offset above zero is not representable (the stored min is subtracted): refit through 0.
    through_zero = torch.where(sqq > 0, sqx / torch.where(sqq > 0, sqq, 1.0), 0.0)
    s = torch.where(b > 0, through_zero, s).clamp(min=0)
    b = b.clamp(max=0)
    # sum (s q + b - x)^2 expanded in the sums, so no further pass over the values is needed.
    err = s * s * sqq + 2 * s * b * sq + n * b * b - 2 * s * sqx - 2 * b * sx + sxx
    return s, b, err


def _fit_sub_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 8, 32) float32 -> (scale, offset) (n, 8), both >= 0, minimising sum (scale*q - offset - x)^2."""
    lo = x.amin(-1).clamp(max=0)
    span = x.amax(-1) - lo
    sx, sxx = x.sum(-1), (x * x).sum(-1)
    inv_span = torch.where(span > 0, 1 / torch.where(span > 0, span, 1.0), 0.0)
    shifted = x - lo.unsqueeze(-1)
    best_s, best_b, best_err = None, None, None
    for stretch in Q4_K_STRETCHES:
        q = (shifted * (inv_span * (15 + stretch)).unsqueeze(-1)).round_().clamp_(0, 15)
        s, b, err = _least_squares(q, x, sx, sxx)
        if best_err is None:
            best_s, best_b, best_err = s, b, err
            continue
        better = err < best_err
        best_s, best_b, best_err = torch.where(better, s, best_s), torch.where(better, b, best_b), torch.minimum(err, best_err)
    return best_s, -best_b


def _six_bit(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 8) >= 0 -> float16 step (n,) and 6-bit multiples (n, 8) uint8 with step * k ~ values."""
    step = (values.amax(-1) / 63).half()
    if not torch.isfinite(step).all():
        raise ValueError("values too large for Q4_K (block scale overflows float16)")
    stepf = step.float().unsqueeze(-1)
    k = torch.where(stepf > 0, values / torch.where(stepf > 0, stepf, torch.ones_like(stepf)), torch.zeros_like(values))
    return step, k.round().clamp(0, 63).to(torch.uint8)


def _pack_q4_k(d, dmin, sc, m, q) -> torch.Tensor:
    """Fields of n super-blocks -> (n, 144) uint8 in GGML's block_q4_K layout."""
    n = len(d)
    lo_sc, hi_sc, lo_m, hi_m = sc[:, :4], sc[:, 4:], m[:, :4], m[:, 4:]
    scales = torch.cat((
        lo_sc | ((hi_sc >> 4) << 6),
        lo_m | ((hi_m >> 4) << 6),
        (hi_sc & 0x0F) | ((hi_m & 0x0F) << 4),
    ), dim=1)
    q = q.reshape(n, 4, 2, 32)
    packed = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)
    halves = torch.stack((d, dmin), 1).view(torch.uint8).reshape(n, 4)
    return torch.cat((halves, scales, packed), dim=1)


def quantize_q4_k(x: torch.Tensor) -> torch.Tensor:
    """x (numel multiple of 256) float -> (numel / 256 * 144,) uint8 Q4_K blocks, computed on x's device."""
    blocks = x.detach().float().reshape(-1, 8, 32)
    if not torch.isfinite(blocks).all():
        raise ValueError("cannot quantise non-finite values to Q4_K")
    scale, offset = _fit_sub_blocks(blocks)
    d, sc = _six_bit(scale)
    dmin, m = _six_bit(offset)
    # Re-round every value against the parameters the decoder will actually see.
    step = (d.float().unsqueeze(-1) * sc.float()).unsqueeze(-1)  # (n, 8, 1)
    shift = (dmin.float().unsqueeze(-1) * m.float()).unsqueeze(-1)
    q = torch.where(step > 0, (blocks + shift) / torch.where(step > 0, step, torch.ones_like(step)), torch.zeros_like(blocks))
    q = q.round().clamp(0, 15).to(torch.uint8)
    return _pack_q4_k(d, dmin, sc, m, q).reshape(-1).cpu()


QUANTIZERS = {"Q8_0": quantize_q8_0, "Q4_K": quantize_q4_k}

"""The decoder's learned upsampling: 1x1x1 conv to C*r channels, then depth-to-space.

Official channel layout (FACTS.md section 5): the r = 4*z channels of each output channel c are ordered
(x, y, z, c) with x the row offset, y the column offset and z the time offset, i.e.
`(b, (x y z c), f, h, w) -> (b, c, (f z), (h x), (w y))`. For the first chunk of a clip the second frame
is dropped (the first latent frame yields one frame), so that frame's z = 1 channels are never computed.

The shuffled frames are written straight into the next conv's padded input, one strided copy per
(frame, row parity, column parity), without an intermediate tensor.
"""

from __future__ import annotations

import torch

from ..ops import cast_weight
from .kernels import CL3D, conv3d
from .layers import Upsample
from .tiles import Span


def _upscale(x: torch.Tensor, up: Upsample, z_only: int | None) -> torch.Tensor:
    """1x1x1 conv of x (B, C, T, h, w) -> (B, T, h, w, 2, 2, Z, C) physical view (Z = 1 if z_only)."""
    w, b = up.upscale_conv.weight, up.upscale_conv.bias
    zr = up.factors[0]
    c = up.conv.in_channels
    if z_only is not None:
        w = w.view(2, 2, zr, c, *w.shape[1:])[:, :, z_only].reshape(4 * c, *w.shape[1:])
        b = b.view(2, 2, zr, c)[:, :, z_only].reshape(4 * c)
        zr = 1
    u = conv3d(x, cast_weight(w, x), cast_weight(b, x)).contiguous(memory_format=CL3D)
    bt, _, t, h, wd = u.shape
    return u.permute(0, 2, 3, 4, 1).view(bt, t, h, wd, 2, 2, zr, c)


def upsample_into(out: torch.Tensor, crop: torch.Tensor, up: Upsample, rows: Span, cols: Span, first: bool) -> None:
    """out (B, C, T', rows, cols) = the upsampled source over high-res `rows` x `cols`.

    crop: the source's low-res rows [rows.lo // 2, ceil(rows.hi / 2)) and the matching columns.
    """
    r0, c0 = rows.lo // 2, cols.lo // 2
    zr = up.factors[0]
    if first and zr > 1:
        parts = [_upscale(crop[:, :, :1], up, z_only=0)]
        frames = [(0, 0, 0)]
        if crop.shape[2] > 1:
            parts.append(_upscale(crop[:, :, 1:], up, None))
            frames += [(1, t, z) for t in range(crop.shape[2] - 1) for z in range(zr)]
    else:
        parts = [_upscale(crop, up, None)]
        frames = [(0, t, z) for t in range(crop.shape[2]) for z in range(zr)]
    assert len(frames) == out.shape[2]
    for j, (p, t, z) in enumerate(frames):
        for px in range(2):
            i0 = (px - rows.lo) % 2
            l0 = (rows.lo + i0 - px) // 2 - r0
            nr = len(range(i0, rows.size, 2))
            for py in range(2):
                k0 = (py - cols.lo) % 2
                m0 = (cols.lo + k0 - py) // 2 - c0
                nc = len(range(k0, cols.size, 2))
                piece = parts[p][:, t, l0:l0 + nr, m0:m0 + nc, px, py, z, :]  # (B, nr, nc, C)
                out[:, :, j, i0::2, k0::2].copy_(piece.permute(0, 3, 1, 2))

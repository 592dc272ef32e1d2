"""The causal 3-D conv of one output tile: its padded input, the weights, and the frames kept for the next chunk.

Causal convs (FACTS.md section 5): the temporal padding is two copies of the first frame in front of the
clip, spatial padding is zeros. Between chunks, each temporal conv keeps the frames of its padded input
that the next chunk's windows still need (the "cache"), so a clip streamed chunk by chunk gives the
whole-clip result. A first chunk of a single frame sees three identical frames, so its conv is run once
with the weights summed over time (a third of the work; equal up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops import cast_weight
from .layers import Upsample
from .norm import norm_silu_into
from .program import ConvStep
from .tensors import CL3D, Act, conv3d, empty_cl
from .tiles import Rect, Span, clip, conv_window


@dataclass(frozen=True)
class Timing:
    """Temporal geometry of one conv on one chunk."""

    front: int  # frames put before the chunk's frames (cache or replicated first frame)
    fold: bool  # single first frame: weights summed over time instead of replication
    frames_out: int
    keep_from: int  # padded-input frame index from which frames are kept as the next cache
    keep: int  # number of frames kept


def timing(conv, frames_in: int, cached: int | None) -> Timing:
    """Temporal geometry for `frames_in` new frames after `cached` kept frames (None: start of the clip)."""
    kt, st = conv.kernel_size[0], conv.stride[0]
    if kt == 1:
        return Timing(0, False, frames_in, 0, 0)
    if cached is None and frames_in == 1:
        return Timing(0, True, 1, st, kt - st)
    front = cached if cached is not None else kt - 1
    padded = front + frames_in
    if padded < kt:
        raise ValueError(f"chunk of {frames_in} frames is too short for a temporal kernel of {kt}")
    out = (padded - kt) // st + 1
    return Timing(front, False, out, out * st, padded - out * st)


def conv_weight(step: ConvStep, tm: Timing) -> torch.Tensor:
    """The conv's weight, or for a folded first frame its sum over time (summed in float32)."""
    w = step.conv.weight
    if not tm.fold:
        return w
    acc = w[:, :, :1].to(torch.float32, copy=True)
    for i in range(1, w.shape[2]):
        acc += w[:, :, i:i + 1]
    return acc.to(w.dtype)


def source_rows(step: ConvStep, rows: Span, h: int) -> Span:
    """Rows of the step's source (h rows) that the output rows `rows` depend on."""
    if step.up is not None:
        hi_res = clip(conv_window(rows, 2 * h, "same")[0], 2 * h)
        return Span(hi_res.lo // 2, (hi_res.hi + 1) // 2)
    return clip(conv_window(rows, h, step.kind)[0], h)


def conv_input(step: ConvStep, src: Act, tile: Rect, cache, tm: Timing, moments, first: bool):
    """The padded conv input of one output tile: (B, Cin, front + frames, rows, cols), its core, conv padding."""
    b = src.shape[0]
    h_in, w_in = (2 * src.shape[3], 2 * src.shape[4]) if step.up is not None else src.shape[3:]
    need_r, core_r = conv_window(tile.rows, h_in, step.kind)
    need_c, core_c = conv_window(tile.cols, w_in, step.kind)
    # An axis the tile spans whole is zero-padded by the conv itself (no border to write).
    pad = tuple(int(step.kind == "same" and need.lo == -1 and need.hi == n + 1) for need, n in
                ((need_r, h_in), (need_c, w_in)))
    need_r = Span(0, h_in) if pad[0] else need_r
    need_c = Span(0, w_in) if pad[1] else need_c
    ok_r, ok_c = clip(need_r, h_in), clip(need_c, w_in)
    frames = tm.front + (1 if tm.fold else frames_in(step, src.shape[2], first))
    like = cache if cache is not None else _any(src)
    buf = empty_cl(like, b, step.conv.in_channels, frames, need_r.size, need_c.size)
    _zero_outside(buf, need_r, need_c, ok_r, ok_c)
    r0, c0 = ok_r.lo - need_r.lo, ok_c.lo - need_c.lo
    inner = buf[:, :, tm.front:, r0:r0 + ok_r.size, c0:c0 + ok_c.size]
    if step.up is not None:
        upsample_into(inner, src.crop(Span(ok_r.lo // 2, (ok_r.hi + 1) // 2), Span(ok_c.lo // 2, (ok_c.hi + 1) // 2)),
                      step.up, ok_r, ok_c, first)
    else:
        for off, part in src.pieces(ok_r, ok_c):
            rows = inner[:, :, :, off:off + part.shape[3]]
            if step.norm is not None:
                norm_silu_into(rows, part, step.norm, moments)
            else:
                rows.copy_(part)
    if tm.front:
        front = buf[:, :, :tm.front, r0:r0 + ok_r.size, c0:c0 + ok_c.size]
        if cache is not None:
            front.copy_(cache[:, :, :, ok_r.lo:ok_r.hi, ok_c.lo:ok_c.hi])
        else:
            front.copy_(inner[:, :, :1].expand_as(front))
    core = Rect(Span(core_r.lo - need_r.lo, core_r.hi - need_r.lo), Span(core_c.lo - need_c.lo, core_c.hi - need_c.lo))
    return buf, (core, core_r, core_c), (0, *pad)


def _any(act: Act) -> torch.Tensor:
    return next(x for x in act.bands if x is not None)


def frames_in(step: ConvStep, t: int, first: bool) -> int:
    """Frames the step's conv receives from a source of t frames (the first latent frame upsamples to one)."""
    if step.up is not None and step.up.temporal:
        return 2 * t - (1 if first else 0)
    return t


def out_size(step: ConvStep, h: int, w: int) -> tuple[int, int]:
    """Output height and width of the step for a source of h x w."""
    if step.down:
        return h // 2, w // 2
    if step.up is not None:
        return 2 * h, 2 * w
    return h, w


def _zero_outside(buf: torch.Tensor, need_r: Span, need_c: Span, ok_r: Span, ok_c: Span) -> None:
    top, bottom = ok_r.lo - need_r.lo, need_r.hi - ok_r.hi
    left, right = ok_c.lo - need_c.lo, need_c.hi - ok_c.hi
    if top:
        buf[:, :, :, :top].zero_()
    if bottom:
        buf[:, :, :, buf.shape[3] - bottom:].zero_()
    if left:
        buf[:, :, :, :, :left].zero_()
    if right:
        buf[:, :, :, :, buf.shape[4] - right:].zero_()


def keep_frames(new_cache: torch.Tensor, buf: torch.Tensor, core, tm: Timing) -> None:
    """Write the frames the next chunk needs, over this tile's core, into the new cache."""
    local, rows, cols = core
    region = new_cache[:, :, :, rows.lo:rows.hi, cols.lo:cols.hi]
    window = (slice(None), slice(None))
    if tm.fold:
        src = buf[(*window, slice(0, 1), slice(local.rows.lo, local.rows.hi), slice(local.cols.lo, local.cols.hi))]
        region.copy_(src.expand_as(region))
    else:
        region.copy_(buf[(*window, slice(tm.keep_from, None), slice(local.rows.lo, local.rows.hi),
                          slice(local.cols.lo, local.cols.hi))])


# -- the decoder's learned upsampling: 1x1x1 conv to C*r channels, then depth-to-space ----------------
# Official channel layout (FACTS.md section 5): the r = 4*z channels of each output channel c are ordered
# (x, y, z, c) with x the row offset, y the column offset and z the time offset, i.e.
# `(b, (x y z c), f, h, w) -> (b, c, (f z), (h x), (w y))`. For the first chunk of a clip the second frame
# is dropped (the first latent frame yields one frame), so that frame's z = 1 channels are never computed.
#
# The shuffled frames are written straight into the next conv's padded input, one strided copy per
# (frame, row parity, column parity), without an intermediate tensor.


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

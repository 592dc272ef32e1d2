"""Run the encoder/decoder steps on one temporal chunk, each conv step tile by tile.

Causal convs (FACTS.md section 5): the temporal padding is two copies of the first frame in front of the
clip, spatial padding is zeros. Between chunks, each temporal conv keeps the frames of its padded input
that the next chunk's windows still need ("cache"), so a clip streamed chunk by chunk gives the whole-clip
result. A first chunk of a single frame sees three identical frames, so its conv is run once with the
weights summed over time (a third of the work; equal up to float rounding).

Tiles: a conv step computes each output tile from its input window (tile plus a one-pixel halo, or the
stride-2 footprint), read from the whole-frame input; GroupNorm statistics come from the whole frame.
So a tiled step equals the untiled one; tiles only bound the temporaries.

Activations are channels-last 3-D tensors (B, C, T, H, W) with (T, H, W, C) order in memory: frame
slices are contiguous, and oneDNN convolves that layout without reordering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..host import check_interrupt
from ..ops import cast_weight
from .norm import frame_moments, frames_view, norm_silu_into
from .program import AttentionStep, ConvStep, Step, last_use
from .tiles import Rect, Span, clip, conv_window
from .upsample import upsample_into

CL3D = torch.channels_last_3d
TilePlan = Callable[[Step, int, int], list[Rect]]  # (step, out height, out width) -> tiles of the output


@dataclass
class StreamState:
    """What a streamed encode or decode carries from one chunk to the next (and per-call caches)."""

    caches: dict[str, torch.Tensor] = field(default_factory=dict)  # conv name -> (B, Cin, k, H, W)
    first: bool = True
    folded: dict[str, torch.Tensor] = field(default_factory=dict)  # conv name -> weight summed over time


@dataclass(frozen=True)
class Timing:
    """Temporal geometry of one conv on one chunk."""

    front: int  # frames put before the chunk's frames (cache or replicated first frame)
    fold: bool  # single first frame: weights summed over time instead of replication
    frames_out: int
    keep_from: int  # padded-input frame index from which frames are kept as the next cache
    keep: int  # number of frames kept


def timing(conv, frames_in: int, cache: torch.Tensor | None) -> Timing:
    kt, st = conv.kernel_size[0], conv.stride[0]
    if kt == 1:
        return Timing(0, False, frames_in, 0, 0)
    if cache is None and frames_in == 1:
        return Timing(0, True, 1, st, kt - st)
    front = cache.shape[2] if cache is not None else kt - 1
    padded = front + frames_in
    if padded < kt:
        raise ValueError(f"chunk of {frames_in} frames is too short for a temporal kernel of {kt}")
    out = (padded - kt) // st + 1
    return Timing(front, False, out, out * st, padded - out * st)


def run_chunk(steps: list[Step], x: torch.Tensor, state: StreamState, plan: TilePlan,
              tick: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Run `steps` on the chunk x (B, C, T, H, W); returns the last step's output (channels-last)."""
    acts = {"input": x.contiguous(memory_format=CL3D)}
    last = last_use(steps)
    out = None
    with torch.inference_mode():
        for i, step in enumerate(steps):
            if isinstance(step, AttentionStep):
                check_interrupt()
                out = attention(step, acts[step.src])
                tick()
            else:
                out = conv_step(step, acts, state, plan, tick)
            acts[step.dst] = out
            for name in [n for n, j in last.items() if j == i and n in acts]:
                del acts[name]
    state.first = False
    return out


def out_size(step: ConvStep, h: int, w: int) -> tuple[int, int]:
    if step.down:
        return h // 2, w // 2
    if step.up is not None:
        return 2 * h, 2 * w
    return h, w


def conv_step(step: ConvStep, acts: dict, state: StreamState, plan: TilePlan, tick) -> torch.Tensor:
    src = acts[step.src]
    b, _, t, h, w = src.shape
    ho, wo = out_size(step, h, w)
    frames_in = t
    if step.up is not None and step.up.temporal:
        frames_in = 2 * t - (1 if state.first else 0)  # the first latent frame yields one frame
    cache = state.caches.get(step.name)
    tm = timing(step.conv, frames_in, cache)
    tiles = plan(step, ho, wo)
    moments = None
    if step.norm is not None and len(tiles) > 1:
        moments = frame_moments(src, step.norm.num_groups)
    weight = _weight(step, state, tm)
    cin = step.conv.in_channels
    new_cache = _empty(src, b, cin, tm.keep, ho if step.up else h, wo if step.up else w) if tm.keep else None
    dst = None
    for tile in tiles:
        check_interrupt()
        buf, core = conv_input(step, src, tile, cache, tm, moments, state.first)
        y = F.conv3d(buf, weight, cast_weight(step.conv.bias, buf), stride=(1 if tm.fold else step.conv.stride[0],
                                                                              *step.conv.stride[1:]))
        if step.residual is not None:
            _add_residual(y, acts[step.residual], tile, step.shortcut)
        if new_cache is not None:
            _keep(new_cache, buf, core, tm)
        if len(tiles) == 1:
            dst = y
        else:
            if dst is None:
                dst = _empty(y, b, y.shape[1], y.shape[2], ho, wo)
            dst[:, :, :, tile.rows.lo:tile.rows.hi, tile.cols.lo:tile.cols.hi] = y
        del buf, y
        tick()
    if new_cache is not None:
        state.caches[step.name] = new_cache
    return dst


def _empty(like: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=CL3D)


def _weight(step: ConvStep, state: StreamState, tm: Timing) -> torch.Tensor:
    w = step.conv.weight
    if not tm.fold:
        return w
    if step.name not in state.folded:
        state.folded[step.name] = w.sum(2, keepdim=True, dtype=torch.float32).to(w.dtype)
    return state.folded[step.name]


def conv_input(step: ConvStep, src: torch.Tensor, tile: Rect, cache, tm: Timing, moments, first: bool):
    """The padded conv input of one output tile: (B, Cin, front + frames, rows, cols), and its core rect."""
    b = src.shape[0]
    h_in, w_in = (2 * src.shape[3], 2 * src.shape[4]) if step.up is not None else src.shape[3:]
    need_r, core_r = conv_window(tile.rows, h_in, step.kind)
    need_c, core_c = conv_window(tile.cols, w_in, step.kind)
    ok_r, ok_c = clip(need_r, h_in), clip(need_c, w_in)
    frames = tm.front + (1 if tm.fold else _frames_in(step, src, first))
    buf = _empty(src, b, step.conv.in_channels, frames, need_r.size, need_c.size)
    _zero_outside(buf, need_r, need_c, ok_r, ok_c)
    r0, c0 = ok_r.lo - need_r.lo, ok_c.lo - need_c.lo
    inner = buf[:, :, tm.front:, r0:r0 + ok_r.size, c0:c0 + ok_c.size]
    if step.up is not None:
        upsample_into(inner, src, step.up, ok_r, ok_c, first)
    else:
        part = src[:, :, :, ok_r.lo:ok_r.hi, ok_c.lo:ok_c.hi]
        if step.norm is not None:
            norm_silu_into(inner, part, step.norm, moments)
        else:
            inner.copy_(part)
    if tm.front:
        front = buf[:, :, :tm.front, r0:r0 + ok_r.size, c0:c0 + ok_c.size]
        if cache is not None:
            front.copy_(cache[:, :, :, ok_r.lo:ok_r.hi, ok_c.lo:ok_c.hi])
        else:
            front.copy_(inner[:, :, :1].expand_as(front))
    core = Rect(Span(core_r.lo - need_r.lo, core_r.hi - need_r.lo), Span(core_c.lo - need_c.lo, core_c.hi - need_c.lo))
    return buf, (core, core_r, core_c)


def _frames_in(step: ConvStep, src: torch.Tensor, first: bool) -> int:
    t = src.shape[2]
    if step.up is not None and step.up.temporal:
        return 2 * t - (1 if first else 0)
    return t


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


def _keep(new_cache: torch.Tensor, buf: torch.Tensor, core, tm: Timing) -> None:
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


def _add_residual(y: torch.Tensor, residual: torch.Tensor, tile: Rect, shortcut) -> None:
    res = residual[:, :, :, tile.rows.lo:tile.rows.hi, tile.cols.lo:tile.cols.hi]
    if shortcut is not None:
        res = F.conv3d(res, cast_weight(shortcut.weight, y), cast_weight(shortcut.bias, y))
    y.add_(res)


def attention(step: AttentionStep, x: torch.Tensor) -> torch.Tensor:
    """x + to_out(softmax(q k^T / sqrt(C)) v) over each frame's h*w positions, q/k/v from GroupNorm(x)."""
    attn = step.attn
    b, c, t, h, w = x.shape
    gn = attn.group_norm
    wt = gn.weight if x.dtype in (torch.bfloat16, torch.float16) else gn.weight.to(x.dtype)
    bs = gn.bias if x.dtype in (torch.bfloat16, torch.float16) else gn.bias.to(x.dtype)
    normed = F.group_norm(frames_view(x), gn.num_groups, wt, bs, gn.eps)  # (b t, c, h, w) channels-last
    tokens = normed.permute(0, 2, 3, 1).reshape(b * t, 1, h * w, c)
    q, k, v = (F.linear(tokens, cast_weight(lin.weight, x), cast_weight(lin.bias, x))
               for lin in (attn.to_q, attn.to_k, attn.to_v))
    del tokens, normed
    o = F.scaled_dot_product_attention(q, k, v)  # (b t, 1, h w, c)
    del q, k, v
    proj = attn.to_out[0]
    o = F.linear(o, cast_weight(proj.weight, x), cast_weight(proj.bias, x))
    out = o.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)  # (b, c, t, h, w) channels-last view
    return out.add_(x)

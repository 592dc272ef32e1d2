"""Run the encoder/decoder steps on one temporal chunk, each conv step tile by tile.

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
from .conv import conv_input, conv_weight, frames_in, keep_frames, out_size, timing
from .kernels import CL3D, conv3d, empty_cl
from .norm import frame_moments, frames_view
from .program import AttentionStep, ConvStep, Step, last_use
from .tiles import Rect

TilePlan = Callable[[Step, int, int], list[Rect]]  # (step, out height, out width) -> tiles of the output


@dataclass
class StreamState:
    """What a streamed encode or decode carries from one chunk to the next (and per-call caches)."""

    caches: dict[str, torch.Tensor] = field(default_factory=dict)  # conv name -> (B, Cin, k, H, W)
    first: bool = True
    last: bool = True  # no chunk follows: nothing to keep
    folded: dict[str, torch.Tensor] = field(default_factory=dict)  # conv name -> weight summed over time


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


def conv_step(step: ConvStep, acts: dict, state: StreamState, plan: TilePlan, tick) -> torch.Tensor:
    src = acts[step.src]
    b, _, t, h, w = src.shape
    ho, wo = out_size(step, h, w)
    cache = state.caches.get(step.name)
    tm = timing(step.conv, frames_in(step, t, state.first), None if cache is None else cache.shape[2])
    tiles = plan(step, ho, wo)
    moments = None
    if step.norm is not None and len(tiles) > 1:
        moments = frame_moments(src, step.norm.num_groups)
    weight = conv_weight(step, tm, state.folded)
    cin = step.conv.in_channels
    keep = tm.keep and not state.last
    new_cache = empty_cl(src, b, cin, tm.keep, ho if step.up else h, wo if step.up else w) if keep else None
    dst = None
    for tile in tiles:
        check_interrupt()
        buf, core, pad = conv_input(step, src, tile, cache, tm, moments, state.first)
        if new_cache is not None:
            keep_frames(new_cache, buf, core, tm)
        stride = (1 if tm.fold else step.conv.stride[0], *step.conv.stride[1:])
        y = conv3d(buf, weight, cast_weight(step.conv.bias, buf), stride, pad)
        del buf
        if step.residual is not None:
            _add_residual(y, acts[step.residual], tile, step.shortcut)
        if len(tiles) == 1:
            dst = y
        else:
            if dst is None:
                dst = empty_cl(y, b, y.shape[1], y.shape[2], ho, wo)
            dst[:, :, :, tile.rows.lo:tile.rows.hi, tile.cols.lo:tile.cols.hi] = y
        del y
        tick()
    state.caches.pop(step.name, None)
    if new_cache is not None:
        state.caches[step.name] = new_cache
    return dst


def _add_residual(y: torch.Tensor, residual: torch.Tensor, tile: Rect, shortcut) -> None:
    res = residual[:, :, :, tile.rows.lo:tile.rows.hi, tile.cols.lo:tile.cols.hi]
    if shortcut is not None:
        res = conv3d(res, cast_weight(shortcut.weight, y), cast_weight(shortcut.bias, y))
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

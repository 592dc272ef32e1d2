"""Run the encoder/decoder steps on one temporal chunk, each conv step tile by tile.

Tiles: a conv step computes each output tile from its input window (tile plus a one-pixel halo, or the
stride-2 footprint), read from the whole-frame input; GroupNorm statistics come from the whole frame.
So a tiled step equals the untiled one; tiles only bound the temporaries. Tiles run in row-major order;
an input read for the last time is freed band by band (`acts.Act`) and a resnet's sum is written into
its skip activation in place, so whole-frame storage stays close to the larger of a step's input and
output.

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
from .conv import Timing, conv_input, conv_weight, frames_in, keep_frames, out_size, source_rows, timing
from .norm import ChannelSums, frame_moments, group_norm
from .program import AttentionStep, ConvStep, Step, last_use
from .tensors import CL3D, Act, conv3d, empty_cl, release_free_memory
from .tiles import Rect, Span

TRIM_BYTES = 16 << 20  # hand freed input bands back to the OS every this many bytes
TilePlan = Callable[[Step, int, int], list[Rect]]  # (step, out height, out width) -> tiles, row-major


@dataclass
class StreamState:
    """What a streamed encode or decode carries from one chunk to the next."""

    caches: dict[str, torch.Tensor] = field(default_factory=dict)  # conv name -> (B, Cin, k, H, W)
    first: bool = True
    last: bool = True  # no chunk follows: nothing to keep


def run_chunk(steps: list[Step], x: torch.Tensor, state: StreamState, plan: TilePlan,
              tick: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Run `steps` on the chunk x (B, C, T, H, W); returns the last step's output (channels-last)."""
    acts = {"input": Act.of(x.contiguous(memory_format=CL3D))}
    last = last_use(steps)
    with torch.inference_mode():
        for i, step in enumerate(steps):
            check_interrupt()
            if isinstance(step, AttentionStep):
                acts[step.dst] = Act.of(attention(step, acts[step.src].tensor()))
                tick()
            else:
                conv_step(step, acts, state, plan(step, *out_size(step, *acts[step.src].shape[3:])),
                          last[step.src] == i, tick)
            for name in [n for n, j in last.items() if j == i and n in acts]:
                del acts[name]
        out = acts[steps[-1].dst].tensor()
    state.first = False
    return out


def conv_step(step: ConvStep, acts: dict[str, Act], state: StreamState, tiles: list[Rect], src_done: bool,
              tick) -> None:
    """Compute acts[step.dst] (and acts[step.shortcut_dst]) tile by tile; updates the step's cache."""
    src = acts[step.src]
    cache = state.caches.pop(step.name, None)
    tm = timing(step.conv, frames_in(step, src.shape[2], state.first), None if cache is None else cache.shape[2])
    # Whole-frame statistics unless the single tile's GroupNorm sees the whole frame itself.
    whole = len(tiles) == 1 and len(src.spans) == 1
    moments = frame_moments(src, step.norm.num_groups) if step.norm is not None and not whole else None
    weight, bias = conv_weight(step, tm), step.conv.bias
    new_cache = _new_cache(step, src, tm, state.last)
    dst, side = _outputs(step, acts, src, tiles, tm)
    release = _release_plan(step, src, tiles, src.shape[3]) if src_done else {}
    freed = 0
    for k, tile in enumerate(tiles):
        check_interrupt()
        buf, core, pad = conv_input(step, src, tile, cache, tm, moments, state.first)
        if new_cache is not None:
            keep_frames(new_cache, buf, core, tm)
        stride = (1 if tm.fold else step.conv.stride[0], *step.conv.stride[1:])
        y = conv3d(buf, weight, cast_weight(bias, buf), stride, pad)
        del buf
        _write(dst, tile, y, in_place=step.residual is not None, single=len(tiles) == 1)
        del y
        if side is not None:
            _shortcut(step, src, side, tile, single=len(tiles) == 1)
        for i in release.get(k, ()):
            freed += src.free(i)
        if freed > TRIM_BYTES:
            release_free_memory()
            freed = 0
        tick()
    if new_cache is not None:
        state.caches[step.name] = new_cache
    acts[step.dst] = dst
    if side is not None:
        acts[step.shortcut_dst] = side
    release_free_memory()


def _new_cache(step: ConvStep, src: Act, tm: Timing, last: bool) -> torch.Tensor | None:
    """Storage for the frames the next chunk needs (none after the last chunk)."""
    if not tm.keep or last:
        return None
    b, _, _, h, w = src.shape
    hin, win = out_size(step, h, w) if step.up is not None else (h, w)
    return empty_cl(next(x for x in src.bands if x is not None), b, step.conv.in_channels, tm.keep, hin, win)


def _outputs(step: ConvStep, acts: dict[str, Act], src: Act, tiles: list[Rect], tm: Timing):
    """(dst, shortcut output or None) of a conv step."""
    b, _, t, h, w = src.shape
    ho, wo = out_size(step, h, w)
    bands = _row_spans(tiles)
    # The skip activation is read at each tile's own rows only, so the sum can replace it in place.
    if step.residual is not None:
        dst = acts[step.residual]
    else:
        dst = Act((b, step.conv.out_channels, tm.frames_out, ho, wo), bands)
    # Statistics for the next GroupNorm are summed while each tile is still in cache.
    dst.sums = ChannelSums() if step.feeds_norm and len(tiles) > 1 else None
    side = Act((b, step.shortcut.out_channels, t, h, w), bands) if step.shortcut is not None else None
    return dst, side


def _shortcut(step: ConvStep, src: Act, side: Act, tile: Rect, single: bool) -> None:
    """side[tile] = the 1x1x1 shortcut conv of the step's input over the tile."""
    x = src.crop(tile.rows, tile.cols)
    sc = conv3d(x, cast_weight(step.shortcut.weight, x), cast_weight(step.shortcut.bias, x))
    if single:
        _adopt(side, sc)
    else:
        side.region(tile.rows, tile.cols, sc).copy_(sc)


def _write(dst: Act, tile: Rect, y: torch.Tensor, in_place: bool, single: bool) -> None:
    """Put a tile's conv output into dst: added to the skip activation, copied, or adopted whole."""
    if in_place:
        for off, piece in dst.pieces(tile.rows, tile.cols):
            piece.add_(y[:, :, :, off:off + piece.shape[3]])
            if dst.sums is not None:
                dst.sums.add(piece)
    elif single:
        _adopt(dst, y)
    else:
        out = dst.region(tile.rows, tile.cols, y)
        out.copy_(y)
        if dst.sums is not None:
            dst.sums.add(out)


def _adopt(dst: Act, y: torch.Tensor) -> None:
    """Single tile: the conv output becomes the activation without a copy."""
    dst.bands[0] = y


def _row_spans(tiles: list[Rect]) -> list[Span]:
    spans = []
    for tile in tiles:
        if not spans or spans[-1] != tile.rows:
            spans.append(tile.rows)
    return spans


def _release_plan(step: ConvStep, src: Act, tiles: list[Rect], h: int) -> dict[int, list[int]]:
    """tile index -> bands of src that no later tile reads (row-major tiles)."""
    last: dict[int, int] = {}
    for k, tile in enumerate(tiles):
        for i in src.band_indices(source_rows(step, tile.rows, h)):
            last[i] = k
    plan: dict[int, list[int]] = {}
    for i, k in last.items():
        plan.setdefault(k, []).append(i)
    return plan


def attention(step: AttentionStep, x: torch.Tensor) -> torch.Tensor:
    """x + to_out(softmax(q k^T / sqrt(C)) v) over each frame's h*w positions, q/k/v from GroupNorm(x)."""
    attn = step.attn
    b, c, t, h, w = x.shape
    tokens = group_norm(x, attn.group_norm).permute(0, 2, 3, 4, 1).reshape(b * t, 1, h * w, c)
    q, k, v = (F.linear(tokens, cast_weight(lin.weight, x), cast_weight(lin.bias, x))
               for lin in (attn.to_q, attn.to_k, attn.to_v))
    del tokens
    o = F.scaled_dot_product_attention(q, k, v)  # (b t, 1, h w, c)
    del q, k, v
    proj = attn.to_out[0]
    o = F.linear(o, cast_weight(proj.weight, x), cast_weight(proj.bias, x))
    out = o.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)  # (b, c, t, h, w) channels-last view
    return out.add_(x)

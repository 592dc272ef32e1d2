"""FLOPs and peak memory of an encode/decode call, from the architecture's shapes alone.

`walk` replays what the engine does (the same step program, chunk plan, tile plans and temporal
geometry) on shapes instead of tensors, and records for every (chunk, step) the FLOPs executed and the
bytes alive at the step's worst moment: whole-frame activations still needed, the temporal caches of
every conv, the call's output, and the step's own temporaries (padded conv input, conv output tile,
GroupNorm output or upsampling temporaries, the convolution library's scratch).

The scratch oneDNN allocates is not visible from Python; `SCRATCH` holds factors of the conv input size
measured on this kind of machine (see benchmarks/vae.py, which also checks the whole estimate against
measured peak RSS).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..config import VAEConfig
from ..errors import MemoryPlanError
from .conv import frames_in, out_size, timing
from .norm import BAND_ELEMENTS
from .program import AttentionStep, last_use
from .tiles import clip, conv_window
from .tiling import VAETiling, frame_plan, latent_chunks, pixel_range, whole_frame_plan

# oneDNN scratch + reorders during a conv, as a multiple of the padded conv input. Fitted to peak RSS of
# real-width encodes/decodes (64x64 to 1024x1024 frames, float32 and bfloat16): estimates land within
# 0.9x-1.2x of the measured peaks (benchmarks/vae.py prints both).
SCRATCH = {torch.float32: 0.4, torch.bfloat16: 0.4, torch.float16: 0.4}
# Allocator slack: freed blocks not yet returned, fragmentation; a fraction of the estimated peak.
SLACK = 0.05
# oneDNN's kernels and primitive cache, weight reorders: resident on top of the tensors (measured).
RUNTIME_BYTES = 24 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepCost:
    chunk: int
    name: str
    flops: int  # of this step in this chunk, times `repeat`
    peak_bytes: int
    repeat: int = 1  # identical chunks this record stands for


def _program(vae, op: str):
    from .model import VideoAutoencoder

    if isinstance(vae, VAEConfig):
        with torch.device("meta"):
            vae = VideoAutoencoder(vae)
    return vae.config, vae.program(op)


def walk(vae, op: str, size: tuple[int, int, int, int], tiling: VAETiling | None = None,
         dtype: torch.dtype = torch.float32, scratch: float | None = None) -> list[StepCost]:
    """Per (chunk, step) costs of `op` ("encode"/"decode") on size (B, T, H, W) of its input.

    `vae` is a VideoAutoencoder or a VAEConfig; mode "tile" is costed as one tile (its peak) and counted
    once per tile (FLOPs) by `estimate`. `scratch`: the conv library's scratch in padded conv inputs
    (default `SCRATCH`, fitted to RSS on the CPU; the memory plan passes the device allocator's figure).
    """
    cfg, steps = _program(vae, op)
    tiling = tiling or VAETiling()
    b, t, h, w = size
    factor, s = cfg.temporal_downsample_factor, cfg.spatial_downsample_factor
    latent_frames = (t - 1) // factor + 1 if op == "encode" else t
    plan = whole_frame_plan
    if tiling.resolved_mode == "frame":
        plan = frame_plan(tiling.tile_size, cfg.block_out_channels[0])
    elem = torch.empty((), dtype=dtype).element_size()
    out_c = 2 * cfg.latent_channels if op == "encode" else cfg.out_channels
    out_t = latent_frames if op == "encode" else pixel_range(0, latent_frames, factor)[1]
    out_hw = h * w // (s * s) if op == "encode" else h * w * s * s
    output = b * out_c * out_t * out_hw * elem
    caches: dict[str, tuple[int, int]] = {}  # conv name -> (frames kept, elements)
    records = []
    chunks = latent_chunks(latent_frames, tiling.chunk_size)
    for k, (lo, hi) in enumerate(chunks):
        # Chunks between the second and the last have the second's shapes: cost one, count it repeat times.
        if len(chunks) > 3 and 1 < k < len(chunks) - 1:
            continue
        repeat = len(chunks) - 2 if len(chunks) > 3 and k == 1 else 1
        p0, p1 = pixel_range(lo, hi, factor)
        acts = {"input": (steps[0].conv.in_channels, p1 - p0 if op == "encode" else hi - lo, h, w)}
        last = last_use(steps)
        ctx = _Ctx(caches, plan, k == 0, hi == latent_frames, b, elem, SCRATCH.get(dtype, 1.0) if scratch is None else scratch)
        for i, step in enumerate(steps):
            flops, peak = _step(step, acts, ctx, last[step.src] == i)
            records.append(StepCost(k, step.name, flops * repeat, peak + output, repeat))
            for name in [n for n, j in last.items() if j == i and n in acts]:
                del acts[name]
    return records


@dataclass
class _Ctx:
    caches: dict
    plan: object
    first: bool
    last: bool
    batch: int
    elem: int
    scratch: float


def _numel(shape) -> int:
    return math.prod(shape)


def _step(step, acts: dict, ctx: _Ctx, src_done: bool) -> tuple[int, int]:
    """(flops, peak bytes excluding the call's output) of one step; adds its outputs to `acts`."""
    c, t, h, w = acts[step.src]
    unit = ctx.batch * ctx.elem
    others = unit * (sum(_numel(a) for n, a in acts.items() if n != step.src)
                     + sum(n for _, n in ctx.caches.values()))
    src = unit * _numel(acts[step.src])
    if isinstance(step, AttentionStep):
        n = h * w
        acts[step.dst] = (c, t, h, w)
        # normed tokens, q, k, v, attention output, projected output (the last becomes the activation)
        return ctx.batch * t * (8 * n * c * c + 4 * n * n * c), others + src + 5 * src
    conv = step.conv
    ho, wo = out_size(step, h, w)
    fin = frames_in(step, t, ctx.first)
    tm = timing(conv, fin, ctx.caches[step.name][0] if step.name in ctx.caches else None)
    tiles = ctx.plan(step, ho, wo)
    flops, temp = 0, 0
    for tile in tiles:
        f, tmp = _tile(step, tile, tm, t, fin, (h, w), (ho, wo), len(tiles) == 1, ctx)
        flops, temp = flops + f, max(temp, tmp)
    cout = conv.out_channels
    out = 0 if step.residual is not None else cout * tm.frames_out * ho * wo  # in-place sums add nothing
    if step.shortcut is not None:
        acts[step.shortcut_dst] = (step.shortcut.out_channels, t, h, w)
        out += _numel(acts[step.shortcut_dst])
    acts[step.dst] = (cout, tm.frames_out, ho, wo)
    out *= unit
    rows = len({tile.rows for tile in tiles})
    if src_done and rows > 1:
        # The input is released band by band while the output fills up (plus one band of halo).
        whole = max(src + out / rows, out + src / rows) + src / rows
    else:
        whole = src + (out if len(tiles) > 1 else 0)
    hin, win = (ho, wo) if step.up is not None else (h, w)
    new_cache = 0 if ctx.last else conv.in_channels * tm.keep * hin * win
    moments = _moments_temp(acts[step.src], ctx) if step.norm is not None and len(tiles) > 1 else 0
    ctx.caches.pop(step.name, None)
    if new_cache:
        ctx.caches[step.name] = (tm.keep, new_cache)
    return flops, int(others + whole + unit * (new_cache + temp) + moments)


def _moments_temp(shape, ctx: _Ctx) -> int:
    """float32 temporaries of `norm.frame_moments` over one band of rows (square, and a copy if half)."""
    c, t, h, w = shape
    rows = min(h, max(1, BAND_ELEMENTS // max(1, ctx.batch * t * w * c)))
    return ctx.batch * t * rows * w * c * 4 * (1 if ctx.elem == 4 else 2)


def _tile(step, tile, tm, t: int, fin: int, src_hw, out_hw, single: bool, ctx: _Ctx) -> tuple[int, int]:
    """(flops, temporaries in elements per batch item) of one output tile."""
    conv = step.conv
    cin, cout = conv.in_channels, conv.out_channels
    kt, kh, kw = conv.kernel_size
    hin, win = out_hw if step.up is not None else src_hw
    th, tw = tile.rows.size, tile.cols.size
    flops = 2 * cin * cout * (1 if tm.fold else kt) * kh * kw * tm.frames_out * th * tw
    need_r = clip(conv_window(tile.rows, hin, step.kind)[0], hin)
    need_c = clip(conv_window(tile.cols, win, step.kind)[0], win)
    buf = cin * (tm.front + (1 if tm.fold else fin)) * conv_window(tile.rows, hin, step.kind)[0].size \
        * conv_window(tile.cols, win, step.kind)[0].size
    y = cout * tm.frames_out * th * tw
    prep, side = 0, 0
    if step.up is not None:
        lo_pos = ((need_r.hi + 1) // 2 - need_r.lo // 2) * ((need_c.hi + 1) // 2 - need_c.lo // 2)
        r = step.up.upscale_conv.out_channels
        first_only = step.up.temporal and fin == 2 * t - 1  # the first latent frame: z = 0 channels only
        channels = (r // 2 + r * (t - 1)) if first_only else r * t
        flops += 2 * cin * channels * lo_pos
        prep = channels * lo_pos
    elif step.norm is not None and single:
        prep = cin * t * need_r.size * need_c.size  # GroupNorm output before the copy into the padded input
    if step.shortcut is not None:
        side = step.shortcut.out_channels * t * th * tw
        flops += 2 * cin * side
    # float32 frame copy (half precision only) and its square while summing the statistics
    sums = cout * th * tw * (4 // ctx.elem) * (1 if ctx.elem == 4 else 2) if step.feeds_norm and not single else 0
    return flops, int(max(buf + prep, buf + y + ctx.scratch * buf, y + 2 * side, y + sums))


class VAECost(NamedTuple):
    flops: int  # executed (a folded first frame counts a third of its official work)
    peak_bytes: int  # activations, caches, temporaries and the call's output; not weights or the input


def estimate(vae, op: str, size: tuple[int, int, int, int], tiling: VAETiling | None = None,
             dtype: torch.dtype = torch.float32, scratch: float | None = None) -> VAECost:
    """FLOPs and peak memory of `vae.encode` / `vae.decode` ("encode"/"decode") on an input of size
    (B, T, H, W) (video for encode, latent for decode) with `tiling`, computing in `dtype`.

    `vae`: a VideoAutoencoder or a VAEConfig (nothing is allocated). Used by the automatic tiling and the
    memory plan; `scratch` as in `walk`.
    """
    tiling = tiling or VAETiling()
    if tiling.resolved_mode == "tile" and tiling.tile_size is not None:
        return _estimate_independent(vae, op, size, tiling, dtype, scratch)
    records = walk(vae, op, size, tiling, dtype, scratch)
    peak = max(r.peak_bytes for r in records)
    return VAECost(sum(r.flops for r in records), int(peak * (1 + SLACK) + RUNTIME_BYTES))


def _estimate_independent(vae, op, size, tiling: VAETiling, dtype, scratch=None) -> VAECost:
    from .model import tile_spans

    cfg = vae if isinstance(vae, VAEConfig) else vae.config
    b, t, h, w = size
    rows, cols, scale = tile_spans(cfg, op, h, w, tiling)
    shapes = Counter((r.size * scale, c.size * scale) for r in rows for c in cols)
    flops, peak = 0, 0
    whole = tiling.with_(tile_size=None, mode="frame")
    for (th, tw), count in shapes.items():
        f, p = estimate(vae, op, (b, t, th, tw), whole, dtype, scratch)
        flops, peak = flops + count * f, max(peak, p)
    return VAECost(flops, peak)


# -- the memory planner -----------------------------------------------------------------------------------
# Pick tile size, tiling mode and chunking from a memory budget (bytes), using the cost model.
#
# Preference order (`plan_tiling`): whole frames; then mode "frame" with the largest tile that fits
# (exact results, about the same speed); then mode "tile" with the largest tile that fits (bounded
# memory whatever the frame size, results drift at the seams' receptive field). Fields the caller set
# explicitly (tile_size, mode) are kept; only the ones left at None are chosen.

TILE_SIZES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32, 16)  # image pixels, largest first


def candidates(tiling: VAETiling, image_side: int) -> list[VAETiling]:
    """Plans to try, preferred first."""
    if tiling.tile_size is not None:
        return [tiling.with_(memory_budget=None, mode=tiling.mode or "frame")]
    sizes = [s for s in TILE_SIZES if s < image_side]
    modes = [tiling.mode] if tiling.mode else ["frame", "tile"]
    plans = [] if tiling.mode == "tile" else [tiling.with_(memory_budget=None, mode="frame")]
    for mode in modes:
        plans += [tiling.with_(memory_budget=None, tile_size=s, mode=mode) for s in sizes]
    return plans


def plan_tiling(vae, op: str, size: tuple[int, int, int, int], tiling: VAETiling,
                dtype: torch.dtype | None = None) -> VAETiling:
    """The preferred plan whose estimated peak fits `tiling.memory_budget`; MemoryPlanError if none does.

    size: (B, T, H, W) of the call's input (video for "encode", latent for "decode").
    """
    dtype = dtype or getattr(vae, "compute_dtype", torch.float32)
    s = (vae.config if hasattr(vae, "config") else vae).spatial_downsample_factor
    side = max(size[2:]) * (1 if op == "encode" else s)
    best = None
    for plan in candidates(tiling, side):
        _, peak = estimate(vae, op, size, plan, dtype)
        if peak <= tiling.memory_budget:
            log.debug("VAE %s %s: %s needs ~%d MiB of %d MiB", op, size, plan, peak >> 20,
                      tiling.memory_budget >> 20)
            return plan
        if best is None or peak < best[1]:
            best = (plan, peak)
    plan, peak = best
    raise MemoryPlanError(
        f"VAE {op} of input size {tuple(size)} in {dtype} needs about {peak / 2**20:.0f} MiB even with "
        f"{_describe(plan)}, more than the budget of {tiling.memory_budget / 2**20:.0f} MiB. "
        "Raise the budget, shorten chunk_size, or process smaller frames."
    )


def _describe(plan: VAETiling) -> str:
    if plan.tile_size is None:
        return "whole frames"
    return f"mode {plan.mode!r} tiles of {plan.tile_size} px and chunks of {plan.chunk_size} latent frames"

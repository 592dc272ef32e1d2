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

import math
from dataclasses import dataclass

import torch

from ..config import VAEConfig
from .conv import frames_in, out_size, timing
from .norm import BAND_ELEMENTS
from .program import AttentionStep, ConvStep, last_use
from .tiles import conv_window
from .tiling import VAETiling, frame_plan, latent_chunks, pixel_range, whole_frame_plan

# oneDNN scratch + reorders during a conv, as a multiple of the padded conv input (fitted, see module doc).
SCRATCH = {torch.float32: 0.7, torch.bfloat16: 1.3, torch.float16: 1.3}
# Allocator slack: freed blocks not yet returned, fragmentation; a fraction of the estimated peak.
SLACK = 0.05


@dataclass(frozen=True)
class StepCost:
    chunk: int
    name: str
    flops: int
    peak_bytes: int


def _programs(vae):
    from .model import VideoAutoencoder

    if isinstance(vae, VAEConfig):
        with torch.device("meta"):
            vae = VideoAutoencoder(vae)
    return vae.config, vae.programs()


def walk(vae, op: str, size: tuple[int, int, int, int], tiling: VAETiling | None = None,
         dtype: torch.dtype = torch.float32) -> list[StepCost]:
    """Per (chunk, step) costs of `op` ("encode"/"decode") on size (B, T, H, W) of its input.

    `vae` is a VideoAutoencoder or a VAEConfig; mode "tile" is costed as one tile (its peak) and counted
    once per tile (FLOPs) by `estimate`.
    """
    cfg, (enc, dec) = _programs(vae)
    tiling = tiling or VAETiling()
    b, t, h, w = size
    steps = enc if op == "encode" else dec
    factor, s = cfg.temporal_downsample_factor, cfg.spatial_downsample_factor
    latent_frames = (t - 1) // factor + 1 if op == "encode" else t
    plan = frame_plan(tiling.tile_size) if tiling.resolved_mode == "frame" else whole_frame_plan
    elem = torch.empty((), dtype=dtype).element_size()
    out_c = 2 * cfg.latent_channels if op == "encode" else cfg.out_channels
    out_t = latent_frames if op == "encode" else pixel_range(0, latent_frames, factor)[1]
    out_hw = h * w // (s * s) if op == "encode" else h * w * s * s
    output = b * out_c * out_t * out_hw * elem
    caches: dict[str, tuple[int, int]] = {}  # conv name -> (frames kept, elements)
    records = []
    for k, (lo, hi) in enumerate(latent_chunks(latent_frames, tiling.chunk_size)):
        p0, p1 = pixel_range(lo, hi, factor)
        acts = {"input": (steps[0].conv.in_channels, p1 - p0 if op == "encode" else hi - lo, h, w)}
        last = last_use(steps)
        last_chunk = hi == latent_frames
        for i, step in enumerate(steps):
            flops, peak, acts[step.dst] = _step(step, acts, caches, plan, k == 0, last_chunk, b, elem)
            records.append(StepCost(k, step.name, flops, peak + output))
            for name in [n for n, j in last.items() if j == i and n in acts]:
                del acts[name]
    return records


def _numel(shape) -> int:
    return math.prod(shape)


def _step(step, acts, caches, plan, first: bool, last: bool, b: int, elem: int):
    """(flops, peak bytes excluding the output, output shape (C, T, H, W)) of one step; updates caches."""
    c, t, h, w = acts[step.src]
    live = b * elem * (sum(_numel(a) for a in acts.values()) + sum(n for _, n in caches.values()))
    if isinstance(step, AttentionStep):
        n = h * w
        flops = b * t * (8 * n * c * c + 4 * n * n * c)
        temps = b * t * n * c * elem * 5  # normed, q, k, v, projected output
        return flops, live + temps, (c, t, h, w)
    conv = step.conv
    ho, wo = out_size(step, h, w)
    fin = frames_in(step, t, first)
    tm = timing(conv, fin, caches[step.name][0] if step.name in caches else None)
    cin, cout = conv.in_channels, conv.out_channels
    kt, kh, kw = conv.kernel_size
    tiles = plan(step, ho, wo)
    hin, win = (ho, wo) if step.up is not None else (h, w)
    new_cache = 0 if last else cin * tm.keep * hin * win
    dst = cout * tm.frames_out * ho * wo
    flops, temp = 0, 0
    for tile in tiles:
        th, tw = tile.rows.size, tile.cols.size
        flops += 2 * cin * cout * (1 if tm.fold else kt) * kh * kw * tm.frames_out * th * tw
        if step.shortcut is not None:
            flops += 2 * step.shortcut.in_channels * cout * tm.frames_out * th * tw
        rows = conv_window(tile.rows, hin, step.kind)[0].size
        cols = conv_window(tile.cols, win, step.kind)[0].size
        buf = cin * (tm.front + (1 if tm.fold else fin)) * rows * cols
        y = cout * tm.frames_out * th * tw
        prep, extra = 0, 0
        if step.up is not None:
            lo_pos = t * (rows // 2 + 1) * (cols // 2 + 1)
            r = step.up.upscale_conv.out_channels
            flops += 2 * cin * r * lo_pos
            prep = r * lo_pos
        elif step.norm is not None and len(tiles) == 1:
            prep = cin * t * th * tw  # the GroupNorm output before it is copied into the padded input
        scratch = SCRATCH.get(_dtype_of(elem), 1.0) * buf
        shortcut = y if step.residual is not None else 0
        temp = max(temp, buf + prep, buf + y + scratch, y + shortcut)
    multi = dst if len(tiles) > 1 else 0
    moments = 2 * BAND_ELEMENTS * 4 if step.norm is not None and len(tiles) > 1 else 0
    peak = live + b * elem * (new_cache + multi + temp) + moments
    caches.pop(step.name, None)
    if new_cache:
        caches[step.name] = (tm.keep, new_cache)
    return flops, peak, (cout, tm.frames_out, ho, wo)


def _dtype_of(elem: int) -> torch.dtype:
    return torch.float32 if elem == 4 else torch.bfloat16


def estimate(vae, op: str, size: tuple[int, int, int, int], tiling: VAETiling | None = None,
             dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """(FLOPs executed, peak bytes) of one call; weights and the caller's input are not counted."""
    tiling = tiling or VAETiling()
    if tiling.resolved_mode == "tile" and tiling.tile_size is not None:
        return _estimate_independent(vae, op, size, tiling, dtype)
    records = walk(vae, op, size, tiling, dtype)
    peak = max(r.peak_bytes for r in records)
    return sum(r.flops for r in records), int(peak * (1 + SLACK))


def _estimate_independent(vae, op, size, tiling: VAETiling, dtype) -> tuple[int, int]:
    from .independent import tile_spans

    cfg = vae if isinstance(vae, VAEConfig) else vae.config
    b, t, h, w = size
    rows, cols, scale = tile_spans(cfg, op, h, w, tiling)
    flops, peak = 0, 0
    for r in rows:
        for c in cols:
            sub = (b, t, r.size * scale, c.size * scale)
            f, p = estimate(vae, op, sub, tiling.with_(tile_size=None, mode="frame"), dtype)
            flops, peak = flops + f, max(peak, p)
    s = cfg.spatial_downsample_factor
    out_c = 2 * cfg.latent_channels if op == "encode" else cfg.out_channels
    out_t = (t - 1) // cfg.temporal_downsample_factor + 1 if op == "encode" else 1 + cfg.temporal_downsample_factor * (t - 1)
    out_hw = h * w // (s * s) if op == "encode" else h * w * s * s
    accumulator = b * out_c * out_t * out_hw * 4  # float32 blend accumulator
    return flops, peak + accumulator

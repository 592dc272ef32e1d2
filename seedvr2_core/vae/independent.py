"""Mode "tile": independent overlapping tiles, each streamed through the whole clip, blended linearly.

Each tile is encoded or decoded as if it were the whole frame (its own GroupNorm statistics, attention
and temporal caches), so memory is that of one tile whatever the frame size and the clip length. The
tile outputs are blended with linear ramps over the overlaps; the weights of every output position are
positive only inside the tiles covering it and sum to one, so sizes, frame counts and value ranges
stay those of the untiled output.
"""

from __future__ import annotations

import torch

from .tiles import Span, overlapping, ramp_weights
from .tiling import VAETiling, whole_frame_plan


def tile_spans(cfg, op: str, h: int, w: int, tiling: VAETiling) -> tuple[list[Span], list[Span], int]:
    """Row and column spans of the tiles on the latent grid, and the input pixels per latent pixel.

    h, w: the call's input size (video pixels for "encode", latent positions for "decode").
    """
    s = cfg.spatial_downsample_factor
    in_scale = s if op == "encode" else 1
    lh, lw = h // in_scale, w // in_scale
    tile = max(1, tiling.tile_size // s)
    overlap = tiling.tile_overlap // s
    return overlapping(lh, tile, overlap), overlapping(lw, tile, overlap), in_scale


def run_independent(vae, steps, x: torch.Tensor, latent_frames: int, tiling: VAETiling, progress,
                    encode: bool) -> torch.Tensor:
    """Encode (x: video) or decode (x: latent) in independent tiles of `tiling.tile_size` image pixels."""
    from .model import run_chunks

    s = vae.config.spatial_downsample_factor
    # Tiles are laid out on the latent grid, so encoder tiles are whole latent pixels.
    rows, cols, in_scale = tile_spans(vae.config, "encode" if encode else "decode", *x.shape[3:], tiling)
    lh, lw = x.shape[3] // in_scale, x.shape[4] // in_scale
    out_scale = 1 if encode else s  # output pixels per latent pixel
    wr = ramp_weights([Span(r.lo * out_scale, r.hi * out_scale) for r in rows], lh * out_scale)
    wc = ramp_weights([Span(c.lo * out_scale, c.hi * out_scale) for c in cols], lw * out_scale)
    n_tiles = len(rows) * len(cols)
    out = None
    for k, (i, j) in enumerate((i, j) for i in range(len(rows)) for j in range(len(cols))):
        r, c = rows[i], cols[j]
        part = x[:, :, :, r.lo * in_scale:r.hi * in_scale, c.lo * in_scale:c.hi * in_scale]
        sub = None if progress is None else (lambda d, t, k=k: progress(k * t + d, n_tiles * t))
        y = run_chunks(vae, steps, part, latent_frames, tiling, whole_frame_plan, sub, encode)
        if out is None:
            out = torch.zeros(*y.shape[:3], lh * out_scale, lw * out_scale, dtype=y.dtype, device=y.device)
        weight = (wr[i][:, None] * wc[j][None, :]).to(y.device)
        region = out[:, :, :, r.lo * out_scale:r.hi * out_scale, c.lo * out_scale:c.hi * out_scale]
        # Accumulate in float32 per tile (the output keeps the compute dtype: no second full-size buffer).
        region.copy_(region.float() + y.float() * weight)
        del y, region
    return out

"""Pick tile size, tiling mode and chunking from a memory budget (bytes), using the cost model.

Preference order (`plan_tiling`): whole frames; then mode "frame" with the largest tile that fits
(exact results, about the same speed); then mode "tile" with the largest tile that fits (bounded
memory whatever the frame size, results drift at the seams' receptive field). Fields the caller set
explicitly (tile_size, mode) are kept; only the ones left at None are chosen.
"""

from __future__ import annotations

import logging

import torch

from ..errors import MemoryPlanError
from .cost import estimate
from .tiling import VAETiling

log = logging.getLogger(__name__)

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

"""Tiling and chunking settings of a VAE call, and the per-step tile plans they give.

Two ways to cut a frame (README "VAE memory"):
* mode "frame" (default): every conv step is computed tile by tile from whole-frame activations, with
  GroupNorm statistics and the mid-block attention over the whole frame. The result equals the untiled
  one; memory holds a few whole-frame activations plus one tile's temporaries.
* mode "tile": independent overlapping tiles of the input run through the whole network (GroupNorm
  statistics, attention and receptive field limited to the tile) and are blended with linear ramps.
  Memory is that of one tile, whatever the frame size; results drift from the untiled ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import InputError
from .program import Step
from .tiles import Rect, Span, grid

MODES = ("frame", "tile")
MIN_STEP_TILE = 8  # positions; smaller tiles only add per-call overhead


@dataclass(frozen=True)
class VAETiling:
    """How `encode` / `decode` bound their memory. The default is the official computation, untiled.

    memory_budget: bytes the call may use for activations (weights excluded); picks `tile_size`, `mode`
        and `chunk_size` when those are left at None (see `memory.plan_tiling`).
    tile_size: tile side in image pixels (the encoder input / decoder output), or None for whole frames.
    tile_overlap: overlap of neighbouring tiles in image pixels, mode "tile" only.
    mode: "frame" (whole-frame statistics, exact) or "tile" (independent blended tiles).
    chunk_size: latent frames per temporal chunk after the first (which is always latent frame 0 alone);
        None runs the whole clip at once. Memory grows with the chunk, not with the clip.
    """

    memory_budget: int | None = None
    tile_size: int | None = None
    tile_overlap: int = 64
    mode: str | None = None
    chunk_size: int | None = 1

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise InputError(f"tiling mode {self.mode!r} is not one of {MODES}")
        if self.tile_size is not None and self.tile_size < 8:
            raise InputError(f"tile_size {self.tile_size} is below 8 pixels; use None for whole frames")
        if self.tile_overlap < 0:
            raise InputError(f"tile_overlap {self.tile_overlap} must be >= 0")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise InputError(f"chunk_size {self.chunk_size} must be >= 1 latent frame, or None")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise InputError(f"memory_budget {self.memory_budget} must be a positive number of bytes")

    @property
    def resolved_mode(self) -> str:
        return self.mode or "frame"

    def with_(self, **changes) -> "VAETiling":
        return replace(self, **changes)


def whole_frame_plan(step: Step, height: int, width: int) -> list[Rect]:
    return [Rect(Span(0, height), Span(0, width))]


def frame_plan(tile_size: int | None, channels: int = 128):
    """Tile plan of mode "frame": full-width bands of rows holding as much as a `tile_size` square.

    Bands rather than squares: a band's rows are contiguous in memory, need no left/right halo, and
    the input they consume can be released band by band. A band of a step with C channels has
    tile_size^2 * channels / C positions (`channels`: the full-resolution width, 128 officially), so
    every step's temporaries are about those of a tile_size square at full resolution, and the wide
    low-resolution steps run in few large bands.
    """
    if tile_size is None:
        return whole_frame_plan

    def plan(step: Step, height: int, width: int) -> list[Rect]:
        conv = getattr(step, "conv", None)
        wide = max(conv.in_channels, conv.out_channels) if conv is not None else channels
        positions = tile_size * tile_size * channels / max(wide, 1)
        rows = max(MIN_STEP_TILE, math.ceil(positions / width))
        return grid(height, width, rows, width)

    return plan


def latent_chunks(frames: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """[l0, l1) latent-frame ranges: frame 0 alone, then `chunk_size` at a time (None: one range)."""
    if chunk_size is None or frames == 1:
        return [(0, frames)]
    out = [(0, 1)]
    for lo in range(1, frames, chunk_size):
        out.append((lo, min(lo + chunk_size, frames)))
    return out


def pixel_range(lo: int, hi: int, factor: int) -> tuple[int, int]:
    """Pixel frames of latent frames [lo, hi): latent 0 is pixel frame 0, latent k >= 1 is `factor` frames."""
    start = 0 if lo == 0 else 1 + factor * (lo - 1)
    return start, 1 + factor * (hi - 1)

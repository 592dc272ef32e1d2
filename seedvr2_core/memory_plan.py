"""The memory plan: blocks to swap, VAE tiling, frames per DiT batch and who stays on the device, for a budget.

Knobs, turned cheapest first (README "Memory plan"):
1. nothing: whole frames, no swapping, both models kept on the device;
2. VAE tiles of mode "frame", largest first: exact (whole-frame statistics), about the same speed;
3. block swapping, fewest blocks first, then the input/output layers: exact; each swapped block crosses
   to the device once per batch, overlapped with compute. 2 and 3 combine: for each swap count, the
   largest exact tile that fits;
4. the models take turns on the device (the DiT leaves during encode/decode, the VAE during the DiT
   step): exact, but both are copied in again every batch, stalls that do not overlap compute;
5. VAE tiles of mode "tile" (independent tiles: bounded memory at any frame size, small drift at seams),
   largest first, each with as many swapped blocks as it needs (a smaller tile recomputes more overlap,
   which costs more than streaming a few more blocks);
6. fewer frames per DiT batch (4n+1): changes the result most (less temporal context, more overlap
   frames restored twice), so it comes last.
Given the batch and who stays, the DiT step depends only on the swap and encode/decode only on the VAE
tiling, so every candidate is a sum of a few cached phase estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .config import DiTConfig
from .memory import (
    CUDA_FIXED_BYTES,
    DiTWeights,
    PhaseBytes,
    color_working_set,
    dit_step_bytes,
    vae_working_set,
)
from .memory_options import ALL, AUTO, MemoryOptions, format_bytes
from .sizing import padded_frame_count
from .vae.cost import TILE_SIZES
from .vae.tiling import VAETiling

LIGHTER = 0.85  # after an out-of-memory error, the failed phase's new estimate must be at most this share
COLOR_CHUNK_PIXELS = 1 << 22  # color.DEFAULT_CHUNK_PIXELS


@dataclass(frozen=True)
class PlanModels:
    """What the plan needs to know of the models: shapes, stored bytes, compute dtypes."""

    dit_config: DiTConfig
    dit_weights: DiTWeights
    dit_dtype: torch.dtype
    vae: object  # a VideoAutoencoder, or a VAEConfig (vae/cost.py reads only shapes)
    vae_bytes: int
    vae_dtype: torch.dtype
    varlen_attention: bool = False


@dataclass(frozen=True)
class Workload:
    """What one run restores: model frame size (multiples of 16), text tokens, colour fix, overlap."""

    height: int
    width: int
    txt_len: int = 58
    color_fix: str = "wavelet"
    overlap: int = 0


@dataclass(frozen=True)
class Target:
    """Where the run computes and how much it may use there."""

    device_type: str  # "cuda", "cpu", ...
    separate: bool  # the device has its own memory (weights can wait in host memory)
    budget: int
    budget_source: str = "given"


@dataclass(frozen=True)
class MemoryPlan:
    """One choice of knobs and its estimated peak per phase (bytes on the compute device)."""

    batch_frames: int
    blocks_to_swap: int
    swap_io: bool
    vae_tiling: VAETiling
    models_stay: bool
    phases: tuple[PhaseBytes, ...]
    num_blocks: int
    target: Target

    @property
    def peak(self) -> int:
        return max(p.total for p in self.phases)

    def phase(self, name: str) -> PhaseBytes:
        return next(p for p in self.phases if p.name == name)

    def knobs(self) -> str:
        """The choices in words: 'batch 21 frames, 12 of 32 blocks swapped, VAE tiles 512 px (exact), ...'."""
        if self.blocks_to_swap == 0 and not self.swap_io:
            swap = "no blocks swapped"
        else:
            swap = f"{self.blocks_to_swap} of {self.num_blocks} blocks swapped" + (" + io layers" if self.swap_io else "")
        t = self.vae_tiling
        if t.tile_size is None:
            tiles = "VAE whole frames"
        elif t.resolved_mode == "frame":
            tiles = f"VAE tiles {t.tile_size} px (exact)"
        else:
            tiles = f"VAE independent tiles {t.tile_size} px, overlap {t.tile_overlap}"
        parts = [f"batch {self.batch_frames} frame{'s' if self.batch_frames != 1 else ''}", swap, tiles]
        if self.target.separate:
            parts.append("DiT and VAE both on the device" if self.models_stay else "DiT and VAE take turns")
        return ", ".join(parts)

    def describe(self) -> str:
        """One line: the choices, the estimated peak and its phase, the budget."""
        worst = max(self.phases, key=lambda p: p.total)
        others = ", ".join(f"{p.name} {format_bytes(p.total)}" for p in self.phases if p is not worst)
        return (f"{self.knobs()} -> estimated peak {format_bytes(self.peak)} ({worst.name}; {others}) "
                f"of a {format_bytes(self.target.budget)} budget ({self.target.budget_source})")


class PlanSearch:
    """Phase estimates for one workload on one target, cached, and the searches over the knobs."""

    def __init__(self, models: PlanModels, work: Workload, target: Target):
        self.models, self.work, self.target = models, work, target
        self._cache: dict[tuple, int] = {}

    # -- estimates ------------------------------------------------------------------------------

    def _cached(self, key: tuple, compute) -> int:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _dit(self, frames: int) -> int:
        m, w = self.models, self.work
        return self._cached(("dit", frames), lambda: dit_step_bytes(
            m.dit_config, frames, w.height, w.width, w.txt_len, m.dit_dtype, self.target.device_type,
            m.varlen_attention, m.dit_weights.largest_cast))

    def _vae(self, op: str, frames: int, tiling: VAETiling) -> int:
        m, w = self.models, self.work
        return self._cached((op, frames, tiling), lambda: vae_working_set(
            m.vae, op, padded_frame_count(frames), w.height, w.width, tiling, m.vae_dtype, self.target.device_type))

    def _host(self, frames: int) -> dict[str, int]:
        """Host tensors of a batch (float32 frames), which count only where the device shares host memory."""
        w = self.work
        frame = 3 * w.height * w.width * 4
        padded = padded_frame_count(frames)
        elem = torch.empty((), dtype=self.models.vae_dtype).element_size()
        # float32 decoder output: the restored frames are a view of it; else a float32 copy of the kept frames.
        copy = 0 if elem == 4 else frame * frames
        color = color_working_set(frames, w.height, w.width, w.color_fix, COLOR_CHUNK_PIXELS)
        # after the colour fix: the blended copy (with overlap), the clipped float32 copy, the uint8 frames
        out = frame * frames * (2 if w.overlap else 1) + frames * w.height * w.width * 3
        return {"base": frame * frames + frame * w.overlap, "padded": frame * padded if padded != frames else 0,
                "copy": copy, "restored": copy or padded * frame, "finish": max(color, out)}

    def phase_names(self) -> tuple[str, ...]:
        """Phases on the compute device, cheapest to estimate first."""
        return ("DiT step", "encode", "decode") + (() if self.target.separate else ("colour fix",))

    def phase(self, name: str, frames: int, swapped: int, swap_io: bool, tiling: VAETiling, stay: bool) -> PhaseBytes:
        """Estimated peak of phase `name` of a batch of `frames` frames under these knobs."""
        m, t = self.models, self.target
        fixed = CUDA_FIXED_BYTES if t.device_type == "cuda" else 0
        dit_w = m.dit_weights.on_device(swapped, swap_io) if t.separate else m.dit_weights.total
        both = dit_w + m.vae_bytes + fixed
        if name == "DiT step":
            work = {"dit": self._dit(frames)}
            weights = both if stay or not t.separate else dit_w + fixed
        else:
            work = {} if name == "colour fix" else {"vae": self._vae(name, frames, tiling)}
            weights = both if stay or not t.separate else m.vae_bytes + fixed
        if not t.separate:
            h = self._host(frames)
            extra = {"encode": h["padded"], "decode": h["copy"], "colour fix": h["restored"] + h["finish"]}
            work["host"] = h["base"] + extra.get(name, 0)
        return PhaseBytes.of(name, weights=weights, **work)

    def phases(self, *knobs) -> tuple[PhaseBytes, ...]:
        """Estimated peak of every phase under `knobs` (frames, swapped, swap_io, tiling, stay)."""
        return tuple(self.phase(name, *knobs) for name in self.phase_names())

    # -- candidates -----------------------------------------------------------------------------

    def batch_sizes(self, memory: MemoryOptions, requested: int) -> list[int]:
        """Frames per batch to try: the requested count, then smaller 4n+1 counts (auto only)."""
        if memory.dit_batch != AUTO:
            return [memory.dit_batch]
        return [requested] + [n for n in range(padded_frame_count(requested) - 4, 0, -4) if n < requested]

    def swaps(self, memory: MemoryOptions) -> list[tuple[int, bool]]:
        blocks = len(self.models.dit_weights.blocks)
        if not self.target.separate:
            return [(0, False)]
        if memory.blocks_to_swap == ALL:
            return [(blocks, False)]
        if memory.blocks_to_swap != AUTO:
            return [(min(memory.blocks_to_swap, blocks), False)]
        return [(k, False) for k in range(blocks + 1)] + [(blocks, True)]

    def tilings(self, memory: MemoryOptions) -> tuple[list[VAETiling], list[VAETiling]]:
        """(exact, inexact) VAE tilings to try, preferred first."""
        if memory.vae_tile != AUTO:
            return [memory.vae_tile], []
        side = max(self.work.height, self.work.width)
        exact = [VAETiling()] + [VAETiling(tile_size=s, mode="frame") for s in TILE_SIZES if s < side]
        smallest = 2 * VAETiling().tile_overlap  # below it the overlaps would be most of each tile
        inexact = [VAETiling(tile_size=s, mode="tile") for s in TILE_SIZES if smallest <= s < side]
        return exact, inexact

    def candidates(self, memory: MemoryOptions, requested: int):
        """Every combination of knobs, in the order of preference of the module docstring."""
        stays = (True, False) if self.target.separate else (True,)
        for frames in self.batch_sizes(memory, requested):
            exact, inexact = self.tilings(memory)
            for stay in stays:
                for swapped, swap_io in self.swaps(memory):
                    for tiling in exact:  # exact tiles cost about nothing: the largest that fits this swap
                        yield frames, swapped, swap_io, tiling, stay
            for stay in stays:
                for tiling in inexact:  # smaller independent tiles recompute more overlap: swap first
                    for swapped, swap_io in self.swaps(memory):
                        yield frames, swapped, swap_io, tiling, stay

    def plan(self, frames: int, swapped: int, swap_io: bool, tiling: VAETiling, stay: bool) -> MemoryPlan:
        return MemoryPlan(frames, swapped, swap_io, tiling, stay, self.phases(frames, swapped, swap_io, tiling, stay),
                          len(self.models.dit_weights.blocks), self.target)

    # -- searches ---------------------------------------------------------------------------------

    def first_fit(self, memory: MemoryOptions, requested: int, limits: dict[str, int] | None = None) -> MemoryPlan | None:
        """The preferred plan whose every phase fits the budget (and `limits`, per phase name), or None."""
        limits = limits or {}
        budget = {n: min(self.target.budget, limits.get(n, math.inf)) for n in self.phase_names()}
        for knobs in self.candidates(memory, requested):
            # Phase by phase, the DiT step first: a plan it rules out costs no VAE estimate.
            if all(self.phase(name, *knobs).total <= budget[name] for name in self.phase_names()):
                return self.plan(*knobs)
        return None

    def smallest(self, memory: MemoryOptions, requested: int) -> MemoryPlan:
        """The plan with the lowest estimated peak (what a refusal names). Every estimate grows with the
        frames per batch, so only the smallest batch is searched."""
        fewest = self.batch_sizes(memory, requested)[-1]
        best = min((k for k in self.candidates(memory, requested) if k[0] == fewest),
                   key=lambda k: max(p.total for p in self.phases(*k)))
        return self.plan(*best)


def lighter_plan(search: PlanSearch, current: MemoryPlan, phase: str, memory: MemoryOptions) -> MemoryPlan | None:
    """After running out of memory in `phase`: the preferred plan at the same batch size whose estimate for
    that phase is at most LIGHTER of the current one (None if there is none)."""
    fixed = replace(memory, dit_batch=current.batch_frames)
    return search.first_fit(fixed, current.batch_frames, {phase: int(current.phase(phase).total * LIGHTER)})
